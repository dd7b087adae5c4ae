package net.traffix.node

import android.content.Context
import androidx.annotation.StringRes
import net.traffix.core.agent.Phase
import net.traffix.core.device.OemGuide
import net.traffix.core.policy.Action
import net.traffix.core.policy.ResourceDecision
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
}
