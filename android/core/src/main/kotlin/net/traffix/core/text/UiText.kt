package net.traffix.core.text

import net.traffix.core.agent.AgentError
import net.traffix.core.agent.ControlFailure
import net.traffix.core.agent.Phase
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.PauseReason
import net.traffix.core.policy.SettingsField
import net.traffix.core.policy.SettingsProblem
import net.traffix.core.protocol.ErrorCode

/**
 * Every text the core hands the app for the owner, as a key: the app shows the string resource
 * named [resName] (res/values/strings.xml), so every word is translatable. A test checks that
 * each key has its string, with exactly [args] arguments (`%1$s`-style) in the resource.
 */
enum class UiText(val resName: String, val args: Int = 0) {
    PHASE_PAIRED("phase_paired"),
    PHASE_CONNECTING("phase_connecting"),
    PHASE_CHALLENGED("phase_challenged"),
    PHASE_SERVING("phase_serving"),
    PHASE_DRAINING("phase_draining"),
    PHASE_BACKING_OFF("phase_backing_off"),
    PHASE_PAUSED("phase_paused"),
    PHASE_STOPPED("phase_stopped"),
    PHASE_FAILED("phase_failed"),

    REASON_BY_OWNER("reason_by_owner"),
    REASON_NOT_ON_WIFI("reason_not_on_wifi"),
    REASON_DATA_SAVER("reason_data_saver"),
    REASON_DAILY_CAP("reason_daily_cap"),
    REASON_MONTHLY_CAP("reason_monthly_cap"),
    REASON_NOT_CHARGING("reason_not_charging"),
    REASON_BATTERY_LOW("reason_battery_low"),
    REASON_OUTSIDE_SCHEDULE("reason_outside_schedule"),
    REASON_BATTERY_SAVER("reason_battery_saver"),

    /** Android 12+ refused a restart in the background (ForegroundServiceStartNotAllowedException). */
    NOTICE_RESTART_REFUSED("notice_restart_refused", 1),

    /** The node was meant to run and is not: the system (or an OEM battery manager) ended it. Arg: when. */
    NOTICE_KILLED("notice_killed", 1),

    /** The server refused this app's protocol version (ERROR 1). */
    NOTICE_UPDATE_REQUIRED("notice_update_required"),

    // ---- why a pairing link is refused (PairLink.Problem) ----
    PAIR_NOT_A_LINK("pair_err_not_a_link"),

    /** Arg: the parameter's name. */
    PAIR_BAD_ESCAPE("pair_err_bad_escape", 1),
    PAIR_BAD_PIN("pair_err_bad_pin"),
    PAIR_NO_SERVER("pair_err_no_server"),

    /** Arg: the server as written in the link. */
    PAIR_BAD_SERVER("pair_err_bad_server", 1),
    PAIR_NO_PIN("pair_err_no_pin"),
    PAIR_NO_CODE("pair_err_no_code"),

    // ---- the settings form (SettingsProblem): the field's label, then the problem ----
    FIELD_BATTERY_FLOOR("set_battery_floor"),
    FIELD_DAILY_CAP("set_daily_cap"),
    FIELD_MONTHLY_CAP("set_monthly_cap"),
    FIELD_MONTH_START_DAY("set_month_start"),
    FIELD_MAX_STREAMS("set_max_streams"),

    /** Args: the field's label, the text as typed. */
    SETTINGS_NOT_A_NUMBER("set_not_a_number", 2),

    /** Args: the field's label, the text as typed. */
    SETTINGS_NOT_WHOLE("set_not_whole", 2),

    /** Args: the field's label, the text as typed. */
    SETTINGS_TOO_LARGE("set_too_large", 2),

    /** Arg: the field's label. */
    SETTINGS_NEGATIVE("set_negative", 1),

    /** Args: the field's label, the lowest and the highest value allowed. */
    SETTINGS_OUT_OF_RANGE("set_out_of_range", 3),

    // ---- the agent's last error (AgentError.Kind; a refusal by its ERROR code) ----
    ERROR_NOT_PAIRED("error_not_paired"),
    ERROR_INSECURE_LINK("error_insecure_link"),
    ERROR_KEY_UNAVAILABLE("error_key_unavailable"),
    ERROR_KEY_LOST("error_key_lost"),
    ERROR_KEY_CANNOT_SIGN("error_key_cannot_sign"),
    ERROR_HANDSHAKE_TIMEOUT("error_handshake_timeout"),
    ERROR_CANNOT_CONNECT("error_cannot_connect"),
    ERROR_CONNECTION_LOST("error_connection_lost"),

    /** Arg: seconds without a word from the server. */
    ERROR_SERVER_SILENT("error_server_silent", 1),
    ERROR_SERVER_DRAINED("error_server_drained"),
    ERROR_PROTOCOL_VIOLATION("error_protocol_violation"),
    REFUSED_VERSION_UNSUPPORTED("refused_version_unsupported"),
    REFUSED_AUTH_FAILED("refused_auth_failed"),
    REFUSED_PAIRING_CODE_INVALID("refused_pairing_code_invalid"),
    REFUSED_DEVICE_BANNED("refused_device_banned"),
    REFUSED_PROTOCOL_VIOLATION("refused_protocol_violation"),
    REFUSED_REPLACED("refused_replaced"),
    REFUSED_SERVER_SHUTDOWN("refused_server_shutdown"),
    REFUSED_LIMIT_EXCEEDED("refused_limit_exceeded"),
    REFUSED_CHALLENGE_TIMEOUT("refused_challenge_timeout"),
    REFUSED_INTERNAL("refused_internal"),
    REFUSED_DEVICE_REMOVED("refused_device_removed"),

    // ---- why a control request (history, unpair) got no answer (ControlFailure) ----
    CONTROL_NOT_CONNECTED("control_not_connected"),
    CONTROL_NOT_PAIRED("control_not_paired"),
    CONTROL_UNREACHABLE("control_unreachable"),
    CONTROL_KEY_UNAVAILABLE("control_key_unavailable"),
    CONTROL_BAD_ANSWER("control_bad_answer"),
    CONTROL_SERVER_TOO_OLD("control_server_too_old"),
    CONTROL_UNAVAILABLE("control_unavailable"),
    CONTROL_BUSY("control_busy"),
    CONTROL_NO_ANSWER("control_no_answer"),
    CONTROL_CLOSED("control_closed"),

    /** Arg: the server's own message (its ERROR text). */
    CONTROL_SERVER_ERROR("control_server_error", 1),
    ;

    companion object {
        fun of(phase: Phase): UiText =
            when (phase) {
                Phase.PAIRED -> PHASE_PAIRED
                Phase.CONNECTING -> PHASE_CONNECTING
                Phase.CHALLENGED -> PHASE_CHALLENGED
                Phase.SERVING -> PHASE_SERVING
                Phase.DRAINING -> PHASE_DRAINING
                Phase.BACKING_OFF -> PHASE_BACKING_OFF
                Phase.PAUSED -> PHASE_PAUSED
                Phase.STOPPED -> PHASE_STOPPED
                Phase.FAILED -> PHASE_FAILED
            }

        fun of(reason: PauseReason): UiText =
            when (reason) {
                PauseReason.BY_OWNER -> REASON_BY_OWNER
                PauseReason.NOT_ON_WIFI -> REASON_NOT_ON_WIFI
                PauseReason.DATA_SAVER -> REASON_DATA_SAVER
                PauseReason.DAILY_CAP -> REASON_DAILY_CAP
                PauseReason.MONTHLY_CAP -> REASON_MONTHLY_CAP
                PauseReason.NOT_CHARGING -> REASON_NOT_CHARGING
                PauseReason.BATTERY_LOW -> REASON_BATTERY_LOW
                PauseReason.OUTSIDE_SCHEDULE -> REASON_OUTSIDE_SCHEDULE
                PauseReason.BATTERY_SAVER -> REASON_BATTERY_SAVER
            }

        fun of(p: PairLink.Problem): UiText =
            when (p) {
                PairLink.Problem.NOT_A_LINK -> PAIR_NOT_A_LINK
                PairLink.Problem.BAD_ESCAPE -> PAIR_BAD_ESCAPE
                PairLink.Problem.BAD_PIN -> PAIR_BAD_PIN
                PairLink.Problem.NO_SERVER -> PAIR_NO_SERVER
                PairLink.Problem.BAD_SERVER -> PAIR_BAD_SERVER
                PairLink.Problem.NO_PIN -> PAIR_NO_PIN
                PairLink.Problem.NO_CODE -> PAIR_NO_CODE
            }

        fun of(f: SettingsField): UiText =
            when (f) {
                SettingsField.BATTERY_FLOOR -> FIELD_BATTERY_FLOOR
                SettingsField.DAILY_CAP -> FIELD_DAILY_CAP
                SettingsField.MONTHLY_CAP -> FIELD_MONTHLY_CAP
                SettingsField.MONTH_START_DAY -> FIELD_MONTH_START_DAY
                SettingsField.MAX_STREAMS -> FIELD_MAX_STREAMS
            }

        fun of(k: SettingsProblem.Kind): UiText =
            when (k) {
                SettingsProblem.Kind.NOT_A_NUMBER -> SETTINGS_NOT_A_NUMBER
                SettingsProblem.Kind.NOT_WHOLE -> SETTINGS_NOT_WHOLE
                SettingsProblem.Kind.TOO_LARGE -> SETTINGS_TOO_LARGE
                SettingsProblem.Kind.NEGATIVE -> SETTINGS_NEGATIVE
                SettingsProblem.Kind.OUT_OF_RANGE -> SETTINGS_OUT_OF_RANGE
            }

        /** The agent's last error: its kind, or for a refusal the server's ERROR code. */
        fun of(e: AgentError): UiText =
            when (e.kind) {
                AgentError.Kind.NOT_PAIRED -> ERROR_NOT_PAIRED
                AgentError.Kind.INSECURE_LINK -> ERROR_INSECURE_LINK
                AgentError.Kind.KEY_UNAVAILABLE -> ERROR_KEY_UNAVAILABLE
                AgentError.Kind.KEY_LOST -> ERROR_KEY_LOST
                AgentError.Kind.KEY_CANNOT_SIGN -> ERROR_KEY_CANNOT_SIGN
                AgentError.Kind.HANDSHAKE_TIMEOUT -> ERROR_HANDSHAKE_TIMEOUT
                AgentError.Kind.CANNOT_CONNECT -> ERROR_CANNOT_CONNECT
                AgentError.Kind.CONNECTION_LOST -> ERROR_CONNECTION_LOST
                AgentError.Kind.SERVER_SILENT -> ERROR_SERVER_SILENT
                AgentError.Kind.SERVER_DRAINED -> ERROR_SERVER_DRAINED
                AgentError.Kind.PROTOCOL_VIOLATION -> ERROR_PROTOCOL_VIOLATION
                AgentError.Kind.SERVER_REFUSED -> of(e.code ?: ErrorCode.INTERNAL)
            }

        fun of(code: ErrorCode): UiText =
            when (code) {
                ErrorCode.VERSION_UNSUPPORTED -> REFUSED_VERSION_UNSUPPORTED
                ErrorCode.AUTH_FAILED -> REFUSED_AUTH_FAILED
                ErrorCode.PAIRING_CODE_INVALID -> REFUSED_PAIRING_CODE_INVALID
                ErrorCode.DEVICE_BANNED -> REFUSED_DEVICE_BANNED
                ErrorCode.PROTOCOL_VIOLATION -> REFUSED_PROTOCOL_VIOLATION
                ErrorCode.REPLACED -> REFUSED_REPLACED
                ErrorCode.SERVER_SHUTDOWN -> REFUSED_SERVER_SHUTDOWN
                ErrorCode.LIMIT_EXCEEDED -> REFUSED_LIMIT_EXCEEDED
                ErrorCode.CHALLENGE_TIMEOUT -> REFUSED_CHALLENGE_TIMEOUT
                ErrorCode.INTERNAL -> REFUSED_INTERNAL
                ErrorCode.DEVICE_REMOVED -> REFUSED_DEVICE_REMOVED
            }

        fun of(f: ControlFailure): UiText =
            when (f) {
                ControlFailure.NOT_CONNECTED -> CONTROL_NOT_CONNECTED
                ControlFailure.NOT_PAIRED -> CONTROL_NOT_PAIRED
                ControlFailure.UNREACHABLE -> CONTROL_UNREACHABLE
                ControlFailure.KEY_UNAVAILABLE -> CONTROL_KEY_UNAVAILABLE
                ControlFailure.BAD_ANSWER -> CONTROL_BAD_ANSWER
                ControlFailure.SERVER_TOO_OLD -> CONTROL_SERVER_TOO_OLD
                ControlFailure.UNAVAILABLE -> CONTROL_UNAVAILABLE
                ControlFailure.BUSY -> CONTROL_BUSY
                ControlFailure.NO_ANSWER -> CONTROL_NO_ANSWER
                ControlFailure.TUNNEL_CLOSED -> CONTROL_CLOSED
                ControlFailure.SERVER_ERROR -> CONTROL_SERVER_ERROR
            }

        /** The argument [e]'s text takes: the seconds of silence; none for the rest. */
        fun args(e: AgentError): List<String> = if (e.kind == AgentError.Kind.SERVER_SILENT) listOf(e.detail) else emptyList()
    }
}
