package net.traffix.core.device

import java.time.ZoneOffset
import net.traffix.core.agent.Agent
import net.traffix.core.agent.AgentError
import net.traffix.core.agent.AgentConfig
import net.traffix.core.agent.AgentListener
import net.traffix.core.agent.AgentStatus
import net.traffix.core.agent.DeviceSample
import net.traffix.core.agent.Phase
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.protocol.ErrorCode
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.NetworkType
import net.traffix.core.testing.FakeClock
import net.traffix.core.testing.FakeTransport
import net.traffix.core.testing.ManualScheduler
import net.traffix.core.testing.SoftwareSigner
import net.traffix.core.text.UiText
import net.traffix.core.util.Bytes
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

class RestartWatchdogTest {
    private val clock = FakeClock()
    private val sched = ManualScheduler(clock)
    private val transport = FakeTransport()

    /** A real agent on a scripted transport and a hand-run clock. */
    private fun agent(): Agent =
        Agent(
            AgentConfig(PairLink("127.0.0.1:8443", Bytes.of(ByteArray(32) { 7 }), "PAIRCODE"), paired = true),
            SoftwareSigner.newP256(),
            transport,
            object : AgentListener {},
            ResourceSettings(),
            DeviceSample(NetworkType.WIFI, 80, false),
            clock = clock,
            zone = ZoneOffset.UTC,
            scheduler = sched,
            random = { 0.5 },
        )

    private fun status(phase: Phase, lastError: AgentError?): AgentStatus = agent().status.copy(phase = phase, lastError = lastError)

    private fun refused(code: ErrorCode) = AgentError(AgentError.Kind.SERVER_REFUSED, code, "node speaks 1..1, server 2..2")

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
        val old = status(Phase.FAILED, refused(ErrorCode.VERSION_UNSUPPORTED))
        assertTrue(RestartWatchdog.needsUpdate(old))
        assertEquals(OwnerNotice(UiText.NOTICE_UPDATE_REQUIRED), RestartWatchdog.assess(RunJournal(), true, 0, old))
        assertFalse(RestartWatchdog.needsUpdate(status(Phase.FAILED, refused(ErrorCode.DEVICE_BANNED))))
        assertFalse(RestartWatchdog.needsUpdate(status(Phase.BACKING_OFF, refused(ErrorCode.VERSION_UNSUPPORTED))))
        // The words the server sent are data: a message that only looks like a version refusal is not one.
        val lookalike = AgentError(AgentError.Kind.CONNECTION_LOST, detail = "server refused: version_unsupported")
        assertFalse(RestartWatchdog.needsUpdate(status(Phase.FAILED, lookalike)))
    }

    @Test
    fun theRealAgentsVersionRefusalIsRecognised() {
        // The agent's own wording of an ERROR 1 during the handshake, not a hand-written copy.
        val a = agent()
        a.start()
        sched.runDue()
        transport.last.open()
        transport.last.deliver(Frame.Error(ErrorCode.VERSION_UNSUPPORTED, "node speaks 1..1"))
        sched.runDue()
        assertTrue("${a.status.lastError}", RestartWatchdog.needsUpdate(a.status))
        assertEquals(OwnerNotice(UiText.NOTICE_UPDATE_REQUIRED), RestartWatchdog.assess(RunJournal(), true, 0, a.status))
        a.close()
    }
}
