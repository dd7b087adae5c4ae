package net.traffix.node

import android.content.Context
import androidx.annotation.StringRes
import java.text.NumberFormat
import java.util.Locale
import net.traffix.core.agent.AgentError
import net.traffix.core.agent.ControlFailure
import net.traffix.core.agent.Phase
import net.traffix.core.device.OemGuide
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.Action
import net.traffix.core.policy.ResourceDecision
import net.traffix.core.policy.SettingsProblem
import net.traffix.core.text.UiText

/**
 * The core's text keys as string resources: an exhaustive `when`, so a new key does not compile
 * without its resource, and core's UiTextTest checks that every resource name exists.
 */
object Texts {
    @StringRes
    fun res(t: UiText): Int =
        when (t) {
            UiText.PHASE_PAIRED -> R.string.phase_paired
            UiText.PHASE_CONNECTING -> R.string.phase_connecting
            UiText.PHASE_CHALLENGED -> R.string.phase_challenged
            UiText.PHASE_SERVING -> R.string.phase_serving
            UiText.PHASE_DRAINING -> R.string.phase_draining
            UiText.PHASE_BACKING_OFF -> R.string.phase_backing_off
            UiText.PHASE_PAUSED -> R.string.phase_paused
            UiText.PHASE_STOPPED -> R.string.phase_stopped
            UiText.PHASE_FAILED -> R.string.phase_failed
            UiText.REASON_BY_OWNER -> R.string.reason_by_owner
            UiText.REASON_NOT_ON_WIFI -> R.string.reason_not_on_wifi
            UiText.REASON_DATA_SAVER -> R.string.reason_data_saver
            UiText.REASON_DAILY_CAP -> R.string.reason_daily_cap
            UiText.REASON_MONTHLY_CAP -> R.string.reason_monthly_cap
            UiText.REASON_NOT_CHARGING -> R.string.reason_not_charging
            UiText.REASON_BATTERY_LOW -> R.string.reason_battery_low
            UiText.REASON_OUTSIDE_SCHEDULE -> R.string.reason_outside_schedule
            UiText.REASON_BATTERY_SAVER -> R.string.reason_battery_saver
            UiText.NOTICE_RESTART_REFUSED -> R.string.notice_restart_refused
            UiText.NOTICE_KILLED -> R.string.notice_killed
            UiText.NOTICE_UPDATE_REQUIRED -> R.string.notice_update_required
            UiText.PAIR_NOT_A_LINK -> R.string.pair_err_not_a_link
            UiText.PAIR_BAD_ESCAPE -> R.string.pair_err_bad_escape
            UiText.PAIR_BAD_PIN -> R.string.pair_err_bad_pin
            UiText.PAIR_NO_SERVER -> R.string.pair_err_no_server
            UiText.PAIR_BAD_SERVER -> R.string.pair_err_bad_server
            UiText.PAIR_NO_PIN -> R.string.pair_err_no_pin
            UiText.PAIR_NO_CODE -> R.string.pair_err_no_code
            UiText.FIELD_BATTERY_FLOOR -> R.string.set_battery_floor
            UiText.FIELD_DAILY_CAP -> R.string.set_daily_cap
            UiText.FIELD_MONTHLY_CAP -> R.string.set_monthly_cap
            UiText.FIELD_MONTH_START_DAY -> R.string.set_month_start
            UiText.FIELD_MAX_STREAMS -> R.string.set_max_streams
            UiText.SETTINGS_NOT_A_NUMBER -> R.string.set_not_a_number
            UiText.SETTINGS_NOT_WHOLE -> R.string.set_not_whole
            UiText.SETTINGS_TOO_LARGE -> R.string.set_too_large
            UiText.SETTINGS_NEGATIVE -> R.string.set_negative
            UiText.SETTINGS_OUT_OF_RANGE -> R.string.set_out_of_range
            UiText.ERROR_NOT_PAIRED -> R.string.error_not_paired
            UiText.ERROR_INSECURE_LINK -> R.string.error_insecure_link
            UiText.ERROR_KEY_UNAVAILABLE -> R.string.error_key_unavailable
            UiText.ERROR_KEY_LOST -> R.string.error_key_lost
            UiText.ERROR_KEY_CANNOT_SIGN -> R.string.error_key_cannot_sign
            UiText.ERROR_HANDSHAKE_TIMEOUT -> R.string.error_handshake_timeout
            UiText.ERROR_CANNOT_CONNECT -> R.string.error_cannot_connect
            UiText.ERROR_CONNECTION_LOST -> R.string.error_connection_lost
            UiText.ERROR_SERVER_SILENT -> R.string.error_server_silent
            UiText.ERROR_SERVER_DRAINED -> R.string.error_server_drained
            UiText.ERROR_PROTOCOL_VIOLATION -> R.string.error_protocol_violation
            UiText.REFUSED_VERSION_UNSUPPORTED -> R.string.refused_version_unsupported
            UiText.REFUSED_AUTH_FAILED -> R.string.refused_auth_failed
            UiText.REFUSED_PAIRING_CODE_INVALID -> R.string.refused_pairing_code_invalid
            UiText.REFUSED_DEVICE_BANNED -> R.string.refused_device_banned
            UiText.REFUSED_PROTOCOL_VIOLATION -> R.string.refused_protocol_violation
            UiText.REFUSED_REPLACED -> R.string.refused_replaced
            UiText.REFUSED_SERVER_SHUTDOWN -> R.string.refused_server_shutdown
            UiText.REFUSED_LIMIT_EXCEEDED -> R.string.refused_limit_exceeded
            UiText.REFUSED_CHALLENGE_TIMEOUT -> R.string.refused_challenge_timeout
            UiText.REFUSED_INTERNAL -> R.string.refused_internal
            UiText.REFUSED_DEVICE_REMOVED -> R.string.refused_device_removed
            UiText.CONTROL_NOT_CONNECTED -> R.string.control_not_connected
            UiText.CONTROL_NOT_PAIRED -> R.string.control_not_paired
            UiText.CONTROL_UNREACHABLE -> R.string.control_unreachable
            UiText.CONTROL_KEY_UNAVAILABLE -> R.string.control_key_unavailable
            UiText.CONTROL_BAD_ANSWER -> R.string.control_bad_answer
            UiText.CONTROL_SERVER_TOO_OLD -> R.string.control_server_too_old
            UiText.CONTROL_UNAVAILABLE -> R.string.control_unavailable
            UiText.CONTROL_BUSY -> R.string.control_busy
            UiText.CONTROL_NO_ANSWER -> R.string.control_no_answer
            UiText.CONTROL_CLOSED -> R.string.control_closed
            UiText.CONTROL_SERVER_ERROR -> R.string.control_server_error
        }

    @StringRes
    fun res(phase: Phase): Int = res(UiText.of(phase))

    /** The battery-manager steps for a phone maker (core [OemGuide] picks the maker). */
    @StringRes
    fun res(g: OemGuide): Int =
        when (g) {
            OemGuide.XIAOMI -> R.string.guide_xiaomi
            OemGuide.HUAWEI -> R.string.guide_huawei
            OemGuide.SAMSUNG -> R.string.guide_samsung
            OemGuide.ONEPLUS -> R.string.guide_oneplus
            OemGuide.OPPO -> R.string.guide_oppo
            OemGuide.VIVO -> R.string.guide_vivo
            OemGuide.OTHER -> R.string.guide_other
        }

    /** The decision's reasons in the owner's language, joined. */
    fun reasons(context: Context, d: ResourceDecision): String =
        d.reasons.joinToString(context.getString(R.string.reason_separator)) { context.getString(res(UiText.of(it))) }

    /** The decision in words: the action, and the core's reasons for it. */
    fun decision(context: Context, d: ResourceDecision): String =
        when (d.action) {
            Action.SERVE -> context.getString(R.string.decision_serve)
            Action.DRAIN -> context.getString(R.string.decision_drain, reasons(context, d))
            Action.PAUSE -> context.getString(R.string.decision_pause, reasons(context, d))
        }

    /** The locale the app's texts are shown in (the owner's, or the app's own language). */
    fun locale(context: Context): Locale = context.resources.configuration.locales[0]

    @StringRes
    fun res(u: ByteUnit): Int =
        when (u) {
            ByteUnit.B -> R.string.size_b
            ByteUnit.KB -> R.string.size_kb
            ByteUnit.MB -> R.string.size_mb
            ByteUnit.GB -> R.string.size_gb
            ByteUnit.TB -> R.string.size_tb
            ByteUnit.PB -> R.string.size_pb
            ByteUnit.EB -> R.string.size_eb
        }

    /** A byte count in the owner's number format and words: "12.3 MB", "12,3 Mo". */
    fun bytes(context: Context, n: Long): String {
        val (number, unit) = Formats.size(n, locale(context))
        return context.getString(res(unit), number)
    }

    /** Micro-units of [currency] in the owner's money format, exactly. */
    fun money(context: Context, micros: Long, currency: String?): String = Formats.money(micros, currency, locale(context))

    /** Why a pairing link was refused. */
    fun pairProblem(context: Context, r: PairLink.Result.Invalid): String {
        val t = UiText.of(r.problem)
        return if (t.args == 0) context.getString(res(t)) else context.getString(res(t), r.detail)
    }

    /** One problem of the settings form: the field's label, the text as typed, the range in the owner's number format. */
    fun settingsProblem(context: Context, p: SettingsProblem): String {
        val field = context.getString(res(UiText.of(p.field)))
        val numbers = NumberFormat.getIntegerInstance(locale(context))
        val t = UiText.of(p.kind)
        return when (p.kind) {
            SettingsProblem.Kind.NEGATIVE -> context.getString(res(t), field)
            SettingsProblem.Kind.OUT_OF_RANGE ->
                context.getString(res(t), field, numbers.format(p.min ?: 0L), numbers.format(p.max ?: 0L))
            else -> context.getString(res(t), field, p.input)
        }
    }

    /** The agent's last error in the owner's words (its detail goes to the log; only numbers such as the seconds of silence are shown). */
    fun error(context: Context, e: AgentError): String {
        val t = UiText.of(e)
        val numbers = NumberFormat.getIntegerInstance(locale(context))
        val args = UiText.args(e).map { a -> a.toLongOrNull()?.let { numbers.format(it) } ?: a }
        return if (t.args == 0 || args.size != t.args) context.getString(res(t)) else context.getString(res(t), *args.toTypedArray())
    }

    /** Why a control request (history, unpair) got no answer; [detail] is the server's own message. */
    fun control(context: Context, reason: ControlFailure, detail: String): String {
        val t = UiText.of(reason)
        return if (t.args == 0) context.getString(res(t)) else context.getString(res(t), detail)
    }
}
