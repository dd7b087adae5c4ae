package net.traffix.core.agent

import java.time.LocalDate
import java.time.ZoneOffset
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors
import net.traffix.core.identity.SigningException
import net.traffix.core.identity.deviceId
import net.traffix.core.net.IpAddr
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.protocol.CONTROL_VERSION
import net.traffix.core.protocol.ErrorCode
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.Handshake
import net.traffix.core.protocol.NetworkType
import net.traffix.core.protocol.StatsEntry
import net.traffix.core.protocol.StatsStatus
import net.traffix.core.protocol.Target
import net.traffix.core.testing.FakeClock
import net.traffix.core.testing.FakeTransport
import net.traffix.core.testing.ManualScheduler
import net.traffix.core.testing.SignatureCheck
import net.traffix.core.testing.SoftwareSigner
import net.traffix.core.transport.CloseCodes
import net.traffix.core.util.Bytes
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

/**
 * History and unpair while the agent has no serving tunnel (paused, stopped, backing off): one
 * control-only session per request (HELLO tag 16), against a scripted server.
 */
class ControlSessionTest {
    private val clock = FakeClock()
    private val sched = ManualScheduler(clock)
    private val transport = FakeTransport()
    private val signer = SoftwareSigner.newP256()
    private val pin = Bytes.of(ByteArray(32) { 7 })
    private val pool = Executors.newCachedThreadPool()
    private var unpairedCalls = 0
    private val listener =
        object : AgentListener {
            override fun onUnpaired() {
                unpairedCalls++
            }
        }
    private val nonce = Bytes.of(ByteArray(32) { it.toByte() })
    private val welcome get() = Frame.Welcome(signer.deviceId(), IpAddr.v4(100, 64, 0, 9), 15, 64, 262_144, 65_536, 300, 16 shl 20)

    private fun agent(paired: Boolean = true, settings: ResourceSettings = ResourceSettings(), s: net.traffix.core.identity.DeviceSigner = signer) =
        Agent(
            AgentConfig(PairLink("127.0.0.1:8443", pin, "PAIRCODE"), paired, agentName = "traffix-test"),
            s,
            transport,
            listener,
            settings,
            DeviceSample(NetworkType.WIFI, batteryPct = 80, charging = false),
            clock = clock,
            zone = ZoneOffset.UTC,
            scheduler = sched,
            random = { 0.5 },
            streamPool = pool,
        )

    /** Starts [a] and walks the serving tunnel's handshake. */
    private fun serving(a: Agent): FakeTransport.FakeSocket {
        a.start()
        sched.runDue()
        val s = transport.last
        s.open()
        s.deliver(Frame.Challenge(2, nonce, 0))
        sched.runDue()
        s.deliver(welcome)
        sched.runDue()
        assertEquals(Phase.SERVING, a.status.phase)
        return s
    }

    /** A control-only session's handshake up to the request; returns the session's socket. */
    private fun controlSession(): FakeTransport.FakeSocket {
        sched.runDue()
        val s = transport.last
        assertEquals("wss://127.0.0.1:8443/v1/tunnel", s.url)
        assertEquals(pin, s.pin)
        s.open()
        sched.runDue()
        val hello = s.sentOf<Frame.Hello>().single()
        assertTrue("HELLO tag 16 = 1", hello.controlOnly)
        assertEquals("a version 1 server refuses instead of taking it for a serving tunnel", CONTROL_VERSION, hello.minVersion)
        assertEquals(signer.deviceId(), hello.deviceId)
        assertEquals(0L, hello.maxStreams)
        s.deliver(Frame.Challenge(2, nonce, 0))
        sched.runDue()
        val proof = s.sentOf<Frame.Proof>().single()
        assertTrue(SignatureCheck.verify(signer.keyAlg, signer.publicKey, Handshake.challengeMessage(pin, signer.deviceId(), nonce), proof.signature))
        s.deliver(welcome)
        sched.runDue()
        return s
    }

    private fun stats(id: Long): Frame.Stats {
        val day = LocalDate.of(2026, 3, 2).toEpochDay()
        return Frame.Stats(
            id, StatsStatus.OK, "EUR", day,
            days = listOf(StatsEntry(day, 3_000_000, 2_100_000)),
            months = listOf(StatsEntry(LocalDate.of(2026, 3, 1).toEpochDay(), 3_000_000, 2_100_000)),
        )
    }

    @After
    fun tearDown() {
        pool.shutdownNow()
    }

    @Test
    fun whilePausedHistoryGoesOverOneControlOnlySessionAndTheNodeStaysPaused() {
        val a = agent()
        val tunnel = serving(a)
        a.updateSettings(ResourceSettings(paused = true))
        sched.runDue()
        assertEquals(Phase.PAUSED, a.status.phase)
        assertEquals("the tunnel closed while paused", CloseCodes.NORMAL, tunnel.closedWith)

        val got = CopyOnWriteArrayList<StatsResult>()
        a.requestHistory(100, 3) { got.add(it) }
        val s = controlSession()
        assertEquals(2, transport.sockets.size)
        val req = s.sentOf<Frame.StatsRequest>().single()
        assertEquals(62 to 3, req.days to req.months)
        // Another request id is not the answer; a HEARTBEAT_ACK or DRAIN is nothing to act on.
        s.deliver(stats(req.requestId + 1))
        s.deliver(Frame.HeartbeatAck(1))
        sched.runDue()
        assertTrue(got.isEmpty())
        s.deliver(stats(req.requestId))
        sched.runDue()
        val h = (got.single() as StatsResult.Ok).history
        assertEquals("EUR", h.currency)
        assertEquals(2_100_000L, h.days.single().earnedMicros)
        assertEquals("closed by the node once answered", CloseCodes.NORMAL, s.closedWith)
        s.drop("closed")
        sched.advance(10_000)
        assertEquals(1, got.size)
        assertEquals(Phase.PAUSED, a.status.phase)
        assertEquals("no serving tunnel, no retry loop", 2, transport.sockets.size)
        assertTrue("the session sent nothing a serving node sends", s.sentOf<Frame.Heartbeat>().isEmpty())
    }

    @Test
    fun whileServingTheLiveTunnelIsUsed() {
        val a = agent()
        val s = serving(a)
        val got = CopyOnWriteArrayList<StatsResult>()
        a.requestHistory(3, 1) { got.add(it) }
        sched.runDue()
        assertEquals("no second connection", 1, transport.sockets.size)
        val req = s.sentOf<Frame.StatsRequest>().single()
        s.deliver(stats(req.requestId))
        sched.runDue()
        assertTrue(got.single() is StatsResult.Ok)
    }

    @Test
    fun unpairWhileStoppedRemovesTheDeviceAndNothingReconnects() {
        val a = agent()
        val got = CopyOnWriteArrayList<UnpairResult>()
        a.unpair("x".repeat(300)) { got.add(it) }
        val s = controlSession()
        val req = s.sentOf<Frame.Unpair>().single()
        assertEquals(200, req.reason!!.length)
        // A STATS echoing the UNPAIR's id is not its answer.
        s.deliver(stats(req.requestId))
        sched.runDue()
        assertTrue(got.isEmpty())
        s.deliver(Frame.Unpaired(req.requestId))
        sched.runDue()
        assertEquals(listOf<UnpairResult>(UnpairResult.Unpaired), got)
        assertEquals(1, unpairedCalls)
        assertEquals(Phase.STOPPED, a.status.phase)
        a.updateSettings(ResourceSettings(wifiOnly = false))
        sched.advance(600_000)
        assertEquals(1, transport.sockets.size)

        // The device is gone: a second unpair has no identity to use.
        a.unpair(null) { got.add(it) }
        sched.runDue()
        assertEquals(UnpairResult.Failed(ControlFailure.NOT_PAIRED), got.last())
    }

    @Test
    fun unpairWhilePausedStopsForGood() {
        val a = agent()
        serving(a)
        a.updateSettings(ResourceSettings(paused = true))
        sched.runDue()
        val got = CopyOnWriteArrayList<UnpairResult>()
        a.unpair(null) { got.add(it) }
        val s = controlSession()
        s.deliver(Frame.Unpaired(s.sentOf<Frame.Unpair>().single().requestId))
        sched.runDue()
        assertEquals(UnpairResult.Unpaired, got.single())
        assertEquals(Phase.STOPPED, a.status.phase)
        // The owner resumes: the pause clears, but an unpaired node does not come back.
        a.updateSettings(ResourceSettings())
        sched.advance(600_000)
        assertEquals(2, transport.sockets.size)
        assertEquals(Phase.STOPPED, a.status.phase)
    }

    @Test
    fun noAnswerInTimeEndsTheSession() {
        val a = agent()
        val got = CopyOnWriteArrayList<StatsResult>()
        a.requestHistory(1, 0) { got.add(it) }
        val s = controlSession()
        // One request, one session: a second one while it is open is refused, not queued.
        a.requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.BUSY), got.single())
        assertEquals(1, transport.sockets.size)
        sched.advance(Agent.CONTROL_TIMEOUT_MILLIS - 1)
        assertEquals(1, got.size)
        sched.advance(1)
        assertEquals(StatsResult.Failed(ControlFailure.NO_ANSWER), got.last())
        assertEquals(CloseCodes.NORMAL, s.closedWith)
        sched.advance(2_000)
        assertTrue("a socket that cannot close is cut", s.cancelled)
        // The next request may open a new session.
        a.requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        assertEquals(2, transport.sockets.size)
    }

    @Test
    fun aServerThatIsNeverReachedOrNeverOpensTimesOut() {
        val a = agent()
        val got = CopyOnWriteArrayList<StatsResult>()
        a.requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        transport.last.drop("connection refused")
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.UNREACHABLE, "connection refused"), got.single())

        a.requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        sched.advance(Agent.CONTROL_TIMEOUT_MILLIS)
        assertEquals(StatsResult.Failed(ControlFailure.NO_ANSWER), got.last())
        assertTrue(transport.last.sent.isEmpty())
    }

    @Test
    fun refusalsAreNamed() {
        val a = agent()
        val got = CopyOnWriteArrayList<StatsResult>()
        // A version 1 server refuses min_version 2.
        a.requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        transport.last.open()
        sched.runDue()
        transport.last.deliver(Frame.Error(ErrorCode.VERSION_UNSUPPORTED, "supported versions are 1..1"))
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.SERVER_TOO_OLD, "supported versions are 1..1"), got.last())

        // Banned, or a third session: the server's words as the detail; the identity is kept.
        a.requestHistory(1, 0) { got.add(it) }
        val s = controlSession()
        s.deliver(Frame.Error(ErrorCode.LIMIT_EXCEEDED, "too many control sessions"))
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.SERVER_ERROR, "too many control sessions"), got.last())
        assertEquals(0, unpairedCalls)

        // Rate-limited and unavailable answers are passed on as they are.
        a.requestHistory(1, 0) { got.add(it) }
        val s2 = controlSession()
        s2.deliver(Frame.Stats(s2.sentOf<Frame.StatsRequest>().single().requestId, StatsStatus.RATE_LIMITED, retryAfterS = 7))
        sched.runDue()
        assertEquals(StatsResult.RateLimited(7), got.last())
    }

    @Test
    fun aDeviceRemovedByTheAdminIsForgotten() {
        val a = agent()
        val got = CopyOnWriteArrayList<StatsResult>()
        a.requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        transport.last.open()
        sched.runDue()
        transport.last.deliver(Frame.Error(ErrorCode.DEVICE_REMOVED, "this device was removed"))
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.SERVER_ERROR, "this device was removed"), got.single())
        assertEquals(1, unpairedCalls)
        assertEquals(Phase.FAILED, a.status.phase)
    }

    @Test
    fun aHostileServerIsAnsweredWithError5() {
        val a = agent()
        val got = CopyOnWriteArrayList<StatsResult>()
        a.requestHistory(1, 0) { got.add(it) }
        val s = controlSession()
        s.deliver(Frame.Open(1, 65_536, Target.Domain("example.com", 443)))
        sched.runDue()
        assertEquals(ErrorCode.PROTOCOL_VIOLATION, s.sentOf<Frame.Error>().single().code)
        assertEquals(ControlFailure.BAD_ANSWER, (got.single() as StatsResult.Failed).reason)

        // WELCOME for another device.
        a.requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        val s2 = transport.last
        s2.open()
        sched.runDue()
        s2.deliver(Frame.Challenge(2, nonce, 0))
        sched.runDue()
        s2.deliver(welcome.copy(deviceId = Bytes.of(ByteArray(16))))
        sched.runDue()
        assertEquals(ControlFailure.BAD_ANSWER, (got.last() as StatsResult.Failed).reason)
        assertTrue("no request to a stranger", s2.sentOf<Frame.StatsRequest>().isEmpty())

        // Bytes that are no frame.
        a.requestHistory(1, 0) { got.add(it) }
        val s3 = controlSession()
        s3.deliverRaw(byteArrayOf(1, 2))
        sched.runDue()
        assertEquals(ControlFailure.BAD_ANSWER, (got.last() as StatsResult.Failed).reason)
        assertEquals(ErrorCode.PROTOCOL_VIOLATION, s3.sentOf<Frame.Error>().single().code)

        // A server choosing protocol 1 for a control-only session.
        a.requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        transport.last.open()
        sched.runDue()
        transport.last.deliver(Frame.Challenge(1, nonce, 0))
        sched.runDue()
        assertEquals(ControlFailure.BAD_ANSWER, (got.last() as StatsResult.Failed).reason)
        assertTrue(transport.last.sentOf<Frame.Proof>().isEmpty())
    }

    @Test
    fun neverPairedOrAKeyThatCannotSignGetsNoSession() {
        val got = CopyOnWriteArrayList<StatsResult>()
        agent(paired = false).requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.NOT_PAIRED), got.single())
        assertTrue(transport.sockets.isEmpty())

        val broken =
            object : net.traffix.core.identity.DeviceSigner by signer {
                override fun sign(message: ByteArray): Bytes = throw SigningException("key invalidated")
            }
        agent(s = broken).requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        transport.last.open()
        sched.runDue()
        transport.last.deliver(Frame.Challenge(2, nonce, 0))
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.KEY_UNAVAILABLE, "key invalidated"), got.last())
        assertNull(transport.last.sentOf<Frame.Proof>().firstOrNull())
        assertFalse(transport.last.closedWith == null)
    }

    /** What the app does while its service is stopped (ControlOnce): an agent built for one request, closed in its callback. */
    @Test
    fun anUnstartedAgentAsksOnceAndIsClosedAfterTheAnswer() {
        val a = agent()
        val got = CopyOnWriteArrayList<StatsResult>()
        a.requestHistory(1, 0) { r ->
            got.add(r)
            a.close()
        }
        val s = controlSession()
        s.deliver(stats(s.sentOf<Frame.StatsRequest>().single().requestId))
        sched.runDue()
        assertTrue(got.single() is StatsResult.Ok)
        assertEquals(Phase.STOPPED, a.status.phase)
        sched.advance(600_000)
        assertEquals("no serving tunnel was ever opened", 1, transport.sockets.size)
        assertTrue(s.sentOf<Frame.Hello>().single().controlOnly)
    }
}
