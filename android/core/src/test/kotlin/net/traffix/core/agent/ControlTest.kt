package net.traffix.core.agent

import java.time.LocalDate
import java.time.ZoneOffset
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors
import net.traffix.core.identity.deviceId
import net.traffix.core.net.IpAddr
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.protocol.ErrorCode
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.MAX_UNPAIR_REASON_LEN
import net.traffix.core.protocol.NetworkType
import net.traffix.core.protocol.StatsEntry
import net.traffix.core.protocol.StatsStatus
import net.traffix.core.testing.FakeClock
import net.traffix.core.testing.FakeTransport
import net.traffix.core.testing.ManualScheduler
import net.traffix.core.testing.SoftwareSigner
import net.traffix.core.util.Bytes
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** Control requests (history, unpair) through the agent against a scripted server. */
class ControlTest {
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

    private fun agent() =
        Agent(
            AgentConfig(PairLink("127.0.0.1:8443", pin, "PAIRCODE"), true),
            signer,
            transport,
            listener,
            ResourceSettings(),
            DeviceSample(NetworkType.WIFI, batteryPct = 80, charging = false),
            clock = clock,
            zone = ZoneOffset.UTC,
            scheduler = sched,
            random = { 0.5 },
            streamPool = pool,
        )

    /** Starts [a] and walks the handshake with the server choosing [version]. */
    private fun serving(a: Agent, version: Int = 2): FakeTransport.FakeSocket {
        a.start()
        sched.runDue()
        val s = transport.last
        s.open()
        assertEquals(2, s.sentOf<Frame.Hello>().single().maxVersion)
        s.deliver(Frame.Challenge(version, nonce, 0))
        sched.runDue()
        s.deliver(Frame.Welcome(signer.deviceId(), IpAddr.v4(100, 64, 0, 9), 15, 64, 262_144, 65_536, 300, 16 shl 20))
        sched.runDue()
        assertEquals(Phase.SERVING, a.status.phase)
        return s
    }

    @After
    fun tearDown() {
        pool.shutdownNow()
    }

    @Test
    fun historyIsAskedOverTheTunnelAndAnsweredByRequestId() {
        val a = agent()
        val s = serving(a)
        val got = CopyOnWriteArrayList<StatsResult>()
        a.requestHistory(100, 30) { got.add(it) }
        sched.runDue()
        val req = s.sentOf<Frame.StatsRequest>().single()
        assertEquals("bounded to what the server answers", 62 to 24, req.days to req.months)
        val day = LocalDate.of(2026, 3, 2).toEpochDay()
        // An answer to another request id is not ours.
        s.deliver(Frame.Stats(req.requestId + 1, StatsStatus.OK))
        sched.runDue()
        assertTrue(got.isEmpty())
        s.deliver(
            Frame.Stats(
                req.requestId, StatsStatus.OK, "EUR", day,
                days = listOf(StatsEntry(day - 1, 0, 0), StatsEntry(day, 3_000_000, 2_100_000)),
                months = listOf(StatsEntry(LocalDate.of(2026, 3, 1).toEpochDay(), 3_000_000, 2_100_000)),
            ),
        )
        sched.runDue()
        val h = (got.single() as StatsResult.Ok).history
        assertEquals("EUR", h.currency)
        assertEquals(listOf(LocalDate.of(2026, 3, 1), LocalDate.of(2026, 3, 2)), h.days.map { it.start })
        assertEquals(2_100_000L, h.days.last().earnedMicros)
        assertEquals(LocalDate.of(2026, 3, 1), h.months.single().start)
        // A late duplicate changes nothing.
        s.deliver(Frame.Stats(req.requestId, StatsStatus.OK))
        sched.runDue()
        assertEquals(1, got.size)

        a.requestHistory(7, 1) { got.add(it) }
        a.requestHistory(7, 1) { got.add(it) }
        sched.runDue()
        val (r2, r3) = s.sentOf<Frame.StatsRequest>().drop(1)
        s.deliver(Frame.Stats(r2.requestId, StatsStatus.RATE_LIMITED, retryAfterS = 8))
        s.deliver(Frame.Stats(r3.requestId, StatsStatus.UNAVAILABLE))
        sched.runDue()
        assertEquals(StatsResult.RateLimited(8), got[1])
        assertEquals(StatsResult.Failed(ControlFailure.UNAVAILABLE), got[2])
    }

    @Test
    fun requestsFailPlainlyWithoutATunnelOnAVersion1ServerAndWithoutAnAnswer() {
        val got = CopyOnWriteArrayList<StatsResult>()
        val a = agent()
        a.requestHistory(7, 1) { got.add(it) }
        sched.runDue()
        // No tunnel: a control-only session is tried instead (ControlSessionTest); here it fails to connect.
        assertTrue(got.isEmpty())
        transport.last.drop("connection refused")
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.UNREACHABLE, "connection refused"), got.single())

        val old = agent()
        val s1 = serving(old, version = 1)
        old.requestHistory(7, 1) { got.add(it) }
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.SERVER_TOO_OLD), got.last())
        assertTrue("nothing a version 1 server would call a violation", s1.sentOf<Frame.StatsRequest>().isEmpty())

        val b = agent()
        val s = serving(b)
        repeat(ControlRequests.MAX_PENDING + 1) { b.requestHistory(1, 0) { r -> got.add(r) } }
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.BUSY), got.last())
        assertEquals(ControlRequests.MAX_PENDING, s.sentOf<Frame.StatsRequest>().size)
        sched.advance(Agent.CONTROL_TIMEOUT_MILLIS)
        assertEquals(List(ControlRequests.MAX_PENDING) { StatsResult.Failed(ControlFailure.NO_ANSWER) }, got.takeLast(4))

        b.requestHistory(1, 0) { got.add(it) }
        sched.runDue()
        s.drop("network lost")
        sched.runDue()
        assertEquals(StatsResult.Failed(ControlFailure.TUNNEL_CLOSED, "tunnel lost: network lost"), got.last())
    }

    @Test
    fun unpairingStopsTheAgentAndTellsTheAppToForgetTheKey() {
        val a = agent()
        val s = serving(a)
        val got = CopyOnWriteArrayList<UnpairResult>()
        a.unpair("x".repeat(300)) { got.add(it) }
        sched.runDue()
        val req = s.sentOf<Frame.Unpair>().single()
        assertEquals(MAX_UNPAIR_REASON_LEN, req.reason!!.length)
        s.deliver(Frame.Unpaired(req.requestId))
        sched.runDue()
        assertEquals(listOf<UnpairResult>(UnpairResult.Unpaired), got)
        assertEquals(1, unpairedCalls)
        assertEquals(Phase.STOPPED, a.status.phase)
        sched.advance(600_000)
        assertEquals("no reconnect after unpairing", 1, transport.sockets.size)
    }

    @Test
    fun aFailedUnpairKeepsTheIdentityAndARemovalByTheAdminForgetsIt() {
        val a = agent()
        val s = serving(a)
        val got = CopyOnWriteArrayList<UnpairResult>()
        a.unpair(null) { got.add(it) }
        sched.runDue()
        s.deliver(Frame.Error(ErrorCode.INTERNAL, "could not unpair: disk full"))
        sched.runDue()
        assertEquals(UnpairResult.Failed(ControlFailure.SERVER_ERROR, "could not unpair: disk full"), got.single())
        assertEquals(0, unpairedCalls)
        sched.advance(60_000)
        val s2 = transport.last
        s2.open()
        s2.deliver(Frame.Challenge(2, nonce, 0))
        sched.runDue()
        s2.deliver(Frame.Welcome(signer.deviceId(), IpAddr.v4(100, 64, 0, 9), 15, 64, 262_144, 65_536, 300, 16 shl 20))
        sched.runDue()
        s2.deliver(Frame.Error(ErrorCode.DEVICE_REMOVED, "this device was removed from the server: pair it again"))
        sched.runDue()
        assertEquals(1, unpairedCalls)
        assertEquals(Phase.FAILED, a.status.phase)
    }
}
