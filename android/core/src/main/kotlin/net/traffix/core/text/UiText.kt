package net.traffix.core.text

import net.traffix.core.agent.Phase
import net.traffix.core.policy.PauseReason

/**
 * Every text the core hands the app for the owner, as a key: the app shows the string resource
 * named [resName] (res/values/strings.xml), so every word is translatable. A test checks that
 * each key has its string. Arguments, where a text has them, are `%1$s`-style in the resource.
 */
enum class UiText(val resName: String) {
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
    NOTICE_RESTART_REFUSED("notice_restart_refused"),

    /** The node was meant to run and is not: the system (or an OEM battery manager) ended it. Arg: when. */
    NOTICE_KILLED("notice_killed"),

    /** The server refused this app's protocol version (ERROR 1). */
    NOTICE_UPDATE_REQUIRED("notice_update_required"),
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
    }
}
