package net.traffix.core.device

import net.traffix.core.agent.AgentStatus
import net.traffix.core.agent.Phase
import net.traffix.core.policy.DataUsage
import net.traffix.core.policy.ResourceDecision
import net.traffix.core.text.UiText
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

class RestartWatchdogTest {
    private fun status(phase: Phase, lastError: String?) =
        AgentStatus(phase, ResourceDecision.SERVE, 0, null, lastError, null, null, null, DataUsage(java.time.LocalDate.of(2026, 1, 1)), 0, 0, 0, null)

    @Test
    fun stickyRestartsAndBootRunOnlyWhatTheOwnerLeftRunning() {
        val off = RunJournal()
        assertTrue(RestartWatchdog.shouldRun(StartCause.OWNER, off))
        assertFalse(RestartWatchdog.shouldRun(StartCause.STICKY_RESTART, off))
        assertFalse(RestartWatchdog.shouldRun(StartCause.BOOT, off))
        val on = RestartWatchdog.started(off, StartCause.OWNER, 1_000)
        assertTrue(on.wantRunning)
        assertTrue(RestartWatchdog.shouldRun(StartCause.STICKY_RESTART, on))
        assertTrue(RestartWatchdog.shouldRun(StartCause.APP_UPDATE, on))
        assertFalse(RestartWatchdog.shouldRun(StartCause.STICKY_RESTART, RestartWatchdog.ownerStopped(on)))
    }

    @Test
    fun aRefusedForegroundStartIsToldToTheOwnerUntilTheyStartAgain() {
        val on = RestartWatchdog.started(RunJournal(), StartCause.OWNER, 1_000)
        val (refused, notice) = RestartWatchdog.foregroundRefused(on, 50_000)
        assertEquals(OwnerNotice(UiText.NOTICE_RESTART_REFUSED, 50_000), notice)
        assertEquals(notice, RestartWatchdog.assess(refused, serviceRunning = false, nowMillis = 60_000, status = null))
        assertTrue("the owner still wants it: opening the app offers to start", refused.wantRunning)
        val again = RestartWatchdog.started(refused, StartCause.OWNER, 70_000)
        assertNull(RestartWatchdog.assess(again, serviceRunning = true, nowMillis = 71_000, status = null))
        assertNull(again.restartRefusedAtMillis)
    }

    @Test
    fun aSilentlyKilledNodeIsReportedAfterFiveMinutes() {
        val on = RestartWatchdog.alive(RestartWatchdog.started(RunJournal(), StartCause.OWNER, 0), 100_000)
        assertNull(RestartWatchdog.assess(on, serviceRunning = false, nowMillis = 100_000 + 60_000, status = null))
        assertEquals(
            OwnerNotice(UiText.NOTICE_KILLED, 100_000),
            RestartWatchdog.assess(on, serviceRunning = false, nowMillis = 100_000 + RestartWatchdog.SILENT_AFTER_MILLIS, status = null),
        )
        assertNull("stopped by the owner: nothing to report", RestartWatchdog.assess(RestartWatchdog.ownerStopped(on), false, 10_000_000, null))
    }

    @Test
    fun aVersionRefusalAsksForAnUpdate() {
        val refused = status(Phase.FAILED, "server refused: version_unsupported: node speaks 1..1, server 2..2")
        assertTrue(RestartWatchdog.needsUpdate(refused))
        assertEquals(OwnerNotice(UiText.NOTICE_UPDATE_REQUIRED), RestartWatchdog.assess(RunJournal(), true, 0, refused))
        assertFalse(RestartWatchdog.needsUpdate(status(Phase.FAILED, "server refused: device_banned: banned")))
        assertFalse(RestartWatchdog.needsUpdate(status(Phase.BACKING_OFF, "server refused: version_unsupported: x")))
        // The agent's wording is the ErrorCode's name: keep the two in step.
        assertEquals(
            RestartWatchdog.VERSION_REFUSAL,
            "server refused: " + net.traffix.core.protocol.ErrorCode.VERSION_UNSUPPORTED.name.lowercase(),
        )
    }
}
