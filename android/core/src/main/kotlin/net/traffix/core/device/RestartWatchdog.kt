package net.traffix.core.device

import net.traffix.core.agent.AgentStatus
import net.traffix.core.agent.Phase
import net.traffix.core.text.UiText

/** Why the node service was started. */
enum class StartCause {
    /** The owner pressed Start, paired, or resumed from the notification or tile. */
    OWNER,

    /** BOOT_COMPLETED with "start on boot". */
    BOOT,

    /** MY_PACKAGE_REPLACED while it was running. */
    APP_UPDATE,

    /** The system re-created the service after killing it (START_STICKY, null intent). */
    STICKY_RESTART,
}

/** What the service remembers about its own life (persisted with the settings). */
data class RunJournal(
    /** The owner wants the node running (set on start, cleared only by the owner's stop). */
    val wantRunning: Boolean = false,
    /** Wall-clock time the service last said it was alive (written with the usage counters). */
    val lastAliveMillis: Long? = null,
    /** Wall-clock time Android refused to let a restart go foreground, until the owner acts. */
    val restartRefusedAtMillis: Long? = null,
)

/** A message for the owner: the text key and its argument (a wall-clock time, where it has one). */
data class OwnerNotice(val text: UiText, val atMillis: Long? = null)

/**
 * The decisions around staying on, so the service is thin: whether a start should run the node,
 * what to do when Android refuses to let a START_STICKY restart go foreground (Android 12+
 * throws ForegroundServiceStartNotAllowedException for a background start that is not exempt),
 * and what to tell the owner when they open the app.
 */
object RestartWatchdog {
    /** How long without a sign of life, while meant to run, before the owner hears of it. */
    const val SILENT_AFTER_MILLIS = 5 * 60_000L

    /** Whether a start for [cause] should run the node (a sticky restart after the owner's stop should not). */
    fun shouldRun(cause: StartCause, journal: RunJournal): Boolean =
        when (cause) {
            StartCause.OWNER -> true
            StartCause.BOOT, StartCause.APP_UPDATE, StartCause.STICKY_RESTART -> journal.wantRunning
        }

    /** The journal after a start that went foreground. */
    fun started(journal: RunJournal, cause: StartCause, nowMillis: Long): RunJournal =
        journal.copy(
            wantRunning = journal.wantRunning || cause == StartCause.OWNER,
            lastAliveMillis = nowMillis,
            restartRefusedAtMillis = null,
        )

    /**
     * Android refused to let the service go foreground: it must stop, and the owner must be
     * told (a plain notification may still be posted) that the node is off until they open the
     * app. The owner still wants it running, so opening the app offers to start it.
     */
    fun foregroundRefused(journal: RunJournal, nowMillis: Long): Pair<RunJournal, OwnerNotice> =
        journal.copy(restartRefusedAtMillis = nowMillis) to OwnerNotice(UiText.NOTICE_RESTART_REFUSED, nowMillis)

    /** The owner stopped the node: nothing restarts it and nothing is reported. */
    fun ownerStopped(journal: RunJournal): RunJournal = journal.copy(wantRunning = false, restartRefusedAtMillis = null)

    /** A sign of life from the running service. */
    fun alive(journal: RunJournal, nowMillis: Long): RunJournal = journal.copy(lastAliveMillis = nowMillis)

    /**
     * What the Home screen says when the app opens: a refused restart; or the node meant to run,
     * no service running, and silent for [SILENT_AFTER_MILLIS] (the system or an OEM battery
     * manager ended it: point at the battery guide); or the server wanting a newer app.
     */
    fun assess(journal: RunJournal, serviceRunning: Boolean, nowMillis: Long, status: AgentStatus?): OwnerNotice? {
        if (status != null && needsUpdate(status)) return OwnerNotice(UiText.NOTICE_UPDATE_REQUIRED)
        if (serviceRunning || !journal.wantRunning) return null
        journal.restartRefusedAtMillis?.let { return OwnerNotice(UiText.NOTICE_RESTART_REFUSED, it) }
        val last = journal.lastAliveMillis ?: return null
        return if (nowMillis - last >= SILENT_AFTER_MILLIS) OwnerNotice(UiText.NOTICE_KILLED, last) else null
    }

    /**
     * The server refused this app's protocol version (ERROR 1, version_unsupported): the agent
     * stops for good with that refusal as its last error.
     */
    fun needsUpdate(status: AgentStatus): Boolean = status.phase == Phase.FAILED && status.lastError?.updateRequired == true
}
