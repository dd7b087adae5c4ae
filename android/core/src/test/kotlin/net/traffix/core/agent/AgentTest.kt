package net.traffix.core.agent

import java.io.IOException
import java.net.InetAddress
import java.net.ServerSocket
import java.time.ZoneOffset
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors
import net.traffix.core.identity.DeviceSigner
import net.traffix.core.identity.EmulatorHints
import net.traffix.core.identity.SigningException
import net.traffix.core.identity.deviceId
import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.Action
import net.traffix.core.policy.PauseReason
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.protocol.ErrorCode
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.Handshake
import net.traffix.core.protocol.NetworkType
import net.traffix.core.protocol.NodeState
import net.traffix.core.protocol.OpenErrReason
import net.traffix.core.protocol.PauseCode
import net.traffix.core.protocol.ResetReason
import net.traffix.core.protocol.Target
import net.traffix.core.testing.FakeClock
import net.traffix.core.testing.FakeTransport
import net.traffix.core.testing.ManualScheduler
import net.traffix.core.testing.SignatureCheck
import net.traffix.core.testing.SoftwareSigner
import net.traffix.core.util.Bytes
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

/** The agent's state machine against a scripted server (FakeTransport) on a hand-run clock. */
class AgentTest {
    private val clock = FakeClock()
    private val sched = ManualScheduler(clock)
    private val transport = FakeTransport()
    private val signer = SoftwareSigner.newP256()
    private val pin = Bytes.of(ByteArray(32) { 7 })
    private val link = PairLink("127.0.0.1:8443", pin, "PAIRCODE")
    private val pool = Executors.newCachedThreadPool()
    private val paired = CopyOnWriteArrayList<String>()
    private val listener =
        object : AgentListener {
            override fun onPaired(vip: String) {
                paired.add(vip)
            }
        }
    private val logs = CopyOnWriteArrayList<String>()
    private val wifi = DeviceSample(NetworkType.WIFI, batteryPct = 80, charging = false)

    /** Metered: not Wi-Fi or Ethernet, and the platform said nothing else. */
    private val cellular = DeviceSample(NetworkType.CELLULAR, batteryPct = 80, charging = false)
    private val nonce = Bytes.of(ByteArray(32) { it.toByte() })

    private fun agent(
        isPaired: Boolean = true,
        settings: ResourceSettings = ResourceSettings(),
        allowPrivate: Boolean = false,
        signer: DeviceSigner = this.signer,
        device: DeviceInfo = DeviceInfo(),
        sample: DeviceSample = wifi,
    ) = Agent(
        AgentConfig(link, isPaired, device = device, allowPrivateTargets = allowPrivate),
        signer,
        transport,
        listener,
        settings,
        sample,
        clock = clock,
        zone = ZoneOffset.UTC,
        scheduler = sched,
        random = { 0.5 },
        streamPool = pool,
        log = { level, msg -> logs.add("$level $msg") },
    )

    private fun welcome(maxStreams: Long = 64) =
        Frame.Welcome(signer.deviceId(), IpAddr.v4(100, 64, 0, 9), 15, maxStreams, 262_144, 65_536, 300, 16 shl 20)

    /** Starts [a] and walks the handshake to SERVING; returns the socket. */
    private fun serving(a: Agent): FakeTransport.FakeSocket {
        a.start()
        sched.runDue()
        val s = transport.last
        s.open()
        s.deliver(Frame.Challenge(1, nonce, 0))
        sched.runDue()
        s.deliver(welcome())
        sched.runDue()
        assertEquals(Phase.SERVING, a.status.phase)
        return s
    }

    @After
    fun tearDown() {
        pool.shutdownNow()
    }

    @Test
    fun pairingSendsPairWithAValidSignatureAndNoDeviceIdInHello() {
        val a = agent(isPaired = false)
        a.start()
        sched.runDue()
        val s = transport.last
        assertEquals("wss://127.0.0.1:8443/v1/tunnel", s.url)
        assertEquals(pin, s.pin)
        assertEquals(Phase.CONNECTING, a.status.phase)
        s.open()
        val hello = s.sentOf<Frame.Hello>().single()
        assertNull("HELLO carries no device id while pairing", hello.deviceId)
        assertEquals(1, hello.minVersion)

        s.deliver(Frame.Challenge(1, nonce, 0))
        sched.runDue()
        assertEquals(Phase.CHALLENGED, a.status.phase)
        val pair = s.sentOf<Frame.Pair>().single()
        assertEquals("PAIRCODE", pair.code)
        assertEquals(signer.publicKey, pair.publicKey)
        val msg = Handshake.challengeMessage(pin, signer.deviceId(), nonce)
        assertTrue(SignatureCheck.verify(pair.keyAlg, pair.publicKey, msg, pair.signature))

        s.deliver(welcome())
        sched.runDue()
        assertEquals(Phase.SERVING, a.status.phase)
        assertEquals(listOf("100.64.0.9"), paired)
        assertEquals("100.64.0.9", a.status.vip)
        val hb = s.sentOf<Frame.Heartbeat>().single()
        assertEquals(NodeState.SERVING, hb.state)
        assertEquals(64L, hb.maxStreams)
    }

    /** Records the attestation challenges the agent makes keys for, and when (sockets open by then). */
    private inner class PreparingSigner(private val inner: DeviceSigner = signer) : DeviceSigner by inner {
        val prepared = CopyOnWriteArrayList<Pair<Bytes, Int>>()
        var failWith: String? = null

        override fun prepareForPairing(attestationChallenge: Bytes) {
            failWith?.let { throw SigningException(it) }
            prepared.add(attestationChallenge to transport.sockets.size)
        }
    }

    @Test
    fun theKeyIsMadeForTheAttestationChallengeBeforeDiallingOncePerCode() {
        val ps = PreparingSigner()
        val a = agent(isPaired = false, signer = ps)
        a.start()
        sched.runDue()
        val want = Handshake.attestationChallenge(pin, "PAIRCODE")
        assertEquals("made before the first socket opened", listOf(want to 0), ps.prepared.toList())
        // A failed first try reconnects with the same key: no second key generation.
        transport.last.drop()
        sched.runDue()
        assertEquals(Phase.BACKING_OFF, a.status.phase)
        sched.advance(120_000)
        assertEquals(2, transport.sockets.size)
        assertEquals(1, ps.prepared.size)
        // The challenge is the one of docs/protocol.md, and it binds the code.
        assertEquals(32, want.size)
        assertNotEquals(want, Handshake.attestationChallenge(pin, "OTHERCODE"))
    }

    @Test
    fun pairCarriesTheEmulatorHintsCleanedAndBounded() {
        val hints = listOf("hardware-ranchu", "product-sdk", "product-sdk", "with space", "") + List(20) { "h$it" }
        val a = agent(isPaired = false, device = DeviceInfo(emulatorHints = hints))
        a.start()
        sched.runDue()
        val s = transport.last
        s.open()
        s.deliver(Frame.Challenge(1, nonce, 0))
        sched.runDue()
        val sent = s.sentOf<Frame.Pair>().single().hints
        assertEquals(listOf("hardware-ranchu", "product-sdk", "withspace") + List(13) { "h$it" }, sent)
        assertEquals(listOf("hardware-ranchu", "product-sdk"), EmulatorHints.from(null, "Pixel", "Google", "ranchu", "sdk_gphone64", "google", "emu64"))
        assertEquals(emptyList<String>(), EmulatorHints.from("google/husky/husky:15/AP4A/1:user/release-keys", "Pixel 8 Pro", "Google", "husky", "husky", "google", "husky"))
    }

    @Test
    fun aKeyThatCannotBeMadeStopsBeforeDialling() {
        val ps = PreparingSigner().apply { failWith = "no secure hardware" }
        val a = agent(isPaired = false, signer = ps)
        a.start()
        sched.runDue()
        assertTrue(transport.sockets.isEmpty())
        assertEquals(Phase.FAILED, a.status.phase)
        assertEquals(AgentError(AgentError.Kind.KEY_UNAVAILABLE, detail = "no secure hardware"), a.status.lastError)
    }

    @Test
    fun aPairedDeviceProvesItsKeyAndStaysPairedAcrossReconnects() {
        val a = agent(isPaired = true)
        val s = serving(a)
        assertEquals(signer.deviceId(), s.sentOf<Frame.Hello>().single().deviceId)
        val proof = s.sentOf<Frame.Proof>().single()
        assertTrue(SignatureCheck.verify(signer.keyAlg, signer.publicKey, Handshake.challengeMessage(pin, signer.deviceId(), nonce), proof.signature))
        assertTrue(s.sentOf<Frame.Pair>().isEmpty())

        // A periodic challenge (no version tag) is answered too.
        val again = Bytes.of(ByteArray(32) { 9 })
        s.deliver(Frame.Challenge(null, again, null))
        sched.runDue()
        assertEquals(again, s.sentOf<Frame.Proof>().last().nonce)
    }

    @Test
    fun backOffIsJitteredDoublesAndResetsOnceATunnelCameUp() {
        val a = agent()
        a.start()
        sched.runDue()
        val delays = ArrayList<Long>()
        repeat(4) {
            transport.last.drop("refused")
            sched.runDue()
            assertEquals(Phase.BACKING_OFF, a.status.phase)
            assertEquals(AgentError(AgentError.Kind.CANNOT_CONNECT, detail = "refused"), a.status.lastError)
            val d = a.status.retryAtMillis!! - clock.wallMillis()
            delays.add(d)
            val before = transport.sockets.size
            sched.advance(d)
            assertEquals("one new attempt after the delay", before + 1, transport.sockets.size)
        }
        // random() = 0.5: three quarters of 500, 1000, 2000, 4000 ms.
        assertEquals(listOf(375L, 750L, 1500L, 3000L), delays)

        // A tunnel that came up starts the sequence over.
        val s = transport.last
        s.open()
        s.deliver(Frame.Challenge(1, nonce, 0))
        sched.runDue()
        s.deliver(welcome())
        sched.runDue()
        s.drop("server restarted")
        sched.runDue()
        assertEquals(375L, a.status.retryAtMillis!! - clock.wallMillis())
        assertTrue(logs.toString(), logs.contains("INFO tunnel up vip=100.64.0.9 max_streams=64 heartbeat_s=15"))
        assertTrue(logs.toString(), logs.last().startsWith("WARN tunnel down reason=\"tunnel lost: server restarted\""))
        assertTrue(logs.toString(), logs.last().endsWith("retry_in_ms=375"))
        assertTrue("the pairing code never reaches the log", logs.none { it.contains("PAIRCODE") })
    }

    @Test
    fun backOffStaysWithinHalfToFullOfItsBase() {
        for (r in listOf(0.0, 0.25, 0.999)) {
            val b = Backoff(random = { r })
            var base = 500L
            repeat(10) {
                val d = b.failed(established = false, livedMillis = 0)
                assertTrue("$d within [${base / 2}, $base]", d in base / 2..base)
                base = minOf(base * 2, 60_000)
            }
            assertEquals("capped at a minute", 60_000L, b.nextBase)
            b.failed(established = false, livedMillis = 30_000)
            assertEquals("a long-lived tunnel resets", 1_000L, b.nextBase)
        }
    }

    @Test
    fun aFatalRefusalStopsRetryingUntilTheOwnerActs() {
        val a = agent()
        val s = serving(a)
        s.deliver(Frame.Error(ErrorCode.DEVICE_BANNED, "banned by admin"))
        sched.runDue()
        assertEquals(Phase.FAILED, a.status.phase)
        assertEquals(AgentError(AgentError.Kind.SERVER_REFUSED, ErrorCode.DEVICE_BANNED, "banned by admin"), a.status.lastError)
        val n = transport.sockets.size
        sched.advance(3_600_000)
        assertEquals("no retry after a fatal refusal", n, transport.sockets.size)
        a.retryNow()
        sched.runDue()
        assertEquals(n + 1, transport.sockets.size)
        assertEquals(Phase.CONNECTING, a.status.phase)

        // Start after a failure tries again too (the owner's Start button).
        transport.last.open()
        transport.last.deliver(Frame.Error(ErrorCode.PAIRING_CODE_INVALID, "expired"))
        sched.runDue()
        assertEquals(Phase.FAILED, a.status.phase)
        a.start()
        sched.runDue()
        assertEquals(n + 2, transport.sockets.size)
    }

    @Test
    fun aNonFatalErrorBacksOff() {
        val a = agent()
        val s = serving(a)
        s.deliver(Frame.Error(ErrorCode.REPLACED, "same device connected again"))
        sched.runDue()
        assertEquals(Phase.BACKING_OFF, a.status.phase)
    }

    @Test
    fun aServerThatNeverChallengesTimesOut() {
        val a = agent()
        a.start()
        sched.runDue()
        transport.last.open()
        sched.advance(9_999)
        assertEquals(Phase.CONNECTING, a.status.phase)
        sched.advance(1)
        assertEquals(Phase.BACKING_OFF, a.status.phase)
        assertEquals(AgentError(AgentError.Kind.HANDSHAKE_TIMEOUT), a.status.lastError)
    }

    @Test
    fun hostileServerMessagesEndTheTunnelWithErrorFive() {
        val cases: List<(FakeTransport.FakeSocket) -> Unit> =
            listOf(
                { it.deliverRaw(byteArrayOf(1, 2, 3)) }, // shorter than a header
                { it.deliverRaw(ByteArray(70_000)) }, // oversized
                { it.deliverRaw(byteArrayOf(0x7f, 0, 0, 0, 0, 0)) }, // unknown type
                { it.deliverText() },
                { it.deliver(welcome()) }, // WELCOME twice
                { it.deliver(Frame.OpenOk(5, 1000, null)) }, // only a node answers OPEN
                { it.deliver(Frame.Hello(1, 1)) },
            )
        for ((i, hostile) in cases.withIndex()) {
            val a = agent()
            val s = serving(a)
            hostile(s)
            sched.runDue()
            val err = s.sentOf<Frame.Error>().singleOrNull()
            assertNotNull("case $i: ERROR sent", err)
            assertEquals("case $i", ErrorCode.PROTOCOL_VIOLATION, err!!.code)
            assertEquals("case $i", Phase.BACKING_OFF, a.status.phase)
        }
    }

    @Test
    fun aSilentServerIsDeclaredDeadAndHeartbeatsCarryRtt() {
        val a = agent()
        val s = serving(a)
        sched.advance(15_000)
        val hbs = s.sentOf<Frame.Heartbeat>()
        assertEquals(listOf(1L, 2L), hbs.map { it.seq })
        clock.advanceMillis(40)
        s.deliver(Frame.HeartbeatAck(2, null))
        sched.runDue()
        assertEquals(40L, a.status.rttMillis)
        assertNull("no tally before the server sends one", a.status.server)
        s.deliver(Frame.HeartbeatAck(7, null, bytesToday = 1_000_000, earnedToday = 1_234, currency = "USD"))
        sched.runDue()
        assertEquals(ServerTally(1_000_000, 1_234, "USD"), a.status.server)
        // Nothing inbound for 2.5 heartbeat intervals + 10 s (47.5 s): dead at the next check.
        sched.advance(15_000)
        assertEquals("the round trip is reported in the next heartbeat", 40L, s.sentOf<Frame.Heartbeat>().last().rttMs)
        sched.advance(15_000)
        sched.advance(15_000)
        assertEquals(Phase.SERVING, a.status.phase)
        sched.advance(15_000)
        assertEquals(Phase.BACKING_OFF, a.status.phase)
        assertEquals(AgentError.Kind.SERVER_SILENT, a.status.lastError!!.kind)
        assertTrue(a.status.lastError!!.detail.toLong() >= 47)
        assertTrue("no WebSocket pings: heartbeats only", s.sent.all { it is Frame.Hello || it is Frame.Proof || it is Frame.Heartbeat })
    }

    @Test
    fun anIdleNodeHeartbeatsAtTheIdleIntervalAndABusyOneAtTheBusyOne() {
        ServerSocket(0, 50, InetAddress.getLoopbackAddress()).use { target ->
            val a = agent(allowPrivate = true)
            a.start()
            sched.runDue()
            val s = transport.last
            s.open()
            s.deliver(Frame.Challenge(1, nonce, 0))
            sched.runDue()
            s.deliver(welcome().copy(idleHeartbeatIntervalS = 60))
            sched.runDue()
            assertEquals(1, s.sentOf<Frame.Heartbeat>().size)
            // Idle: nothing at 15, 30, 45 s; the next heartbeat at 60 s.
            for (i in 1..3) {
                sched.advance(15_000)
                s.deliver(Frame.HeartbeatAck(s.sentOf<Frame.Heartbeat>().last().seq, null))
                sched.runDue()
            }
            assertEquals(1, s.sentOf<Frame.Heartbeat>().size)
            sched.advance(15_000)
            assertEquals(2, s.sentOf<Frame.Heartbeat>().size)
            // Idle, the server may stay silent 160 s (2.5 × 60 + 10) before the node gives up.
            s.deliver(Frame.HeartbeatAck(2, null))
            sched.runDue()
            sched.advance(60_000)
            sched.advance(60_000)
            assertEquals(Phase.SERVING, a.status.phase)
            // A stream opens 5 s later: the next heartbeat is due 15 s after the last one.
            clock.advanceMillis(5_000)
            sched.runDue()
            val before = s.sentOf<Frame.Heartbeat>().size
            s.deliver(Frame.HeartbeatAck(s.sentOf<Frame.Heartbeat>().last().seq, null))
            s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), target.localPort))))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            sched.advance(10_000)
            assertEquals(before + 1, s.sentOf<Frame.Heartbeat>().size)
            assertEquals(1L, s.sentOf<Frame.Heartbeat>().last().activeStreams)
            sched.advance(15_000)
            assertEquals("busy: every 15 s", before + 2, s.sentOf<Frame.Heartbeat>().size)
            a.close()
            sched.runDue()
        }
    }

    @Test
    fun pausedFromTheStartItSaysWhyDrainsClosesAndComesBackWhenItClears() {
        val a = agent(settings = ResourceSettings(wifiOnly = true), sample = cellular)
        a.start()
        sched.runDue()
        val s = transport.last
        s.open()
        s.deliver(Frame.Challenge(1, nonce, 0))
        sched.runDue()
        s.deliver(welcome())
        sched.runDue()
        assertEquals(Phase.PAUSED, a.status.phase)
        val hb = s.sentOf<Frame.Heartbeat>().single()
        assertEquals(NodeState.PAUSED, hb.state)
        assertEquals(net.traffix.core.protocol.PauseCode.NOT_ON_WIFI, hb.pauseReason)
        assertEquals(1, s.sentOf<Frame.Drain>().size)
        assertNotNull("the tunnel is closed", s.closedWith)
        // Still on cellular: the periodic look changes nothing, nobody dials.
        val sockets = transport.sockets.size
        sched.advance(Keepalive.PAUSED_RECHECK_MILLIS * 3)
        assertEquals(sockets, transport.sockets.size)
        assertEquals(Phase.PAUSED, a.status.phase)
        // Wi-Fi again: it reconnects at once.
        a.updateDevice(wifi)
        sched.runDue()
        assertEquals(sockets + 1, transport.sockets.size)
        assertEquals(Phase.CONNECTING, a.status.phase)
    }

    @Test
    fun theOwnersPolicyIsReportedAtOnceAndRefusesStreams() {
        val a = agent(settings = ResourceSettings(wifiOnly = true))
        val s = serving(a)
        a.updateDevice(cellular)
        sched.runDue()
        assertEquals(Action.PAUSE, a.status.decision.action)
        assertEquals(setOf(PauseReason.NOT_ON_WIFI), a.status.decision.reasons)
        // A hard pause: reported with its reason, DRAIN, and the tunnel is closed.
        val hb = s.sentOf<Frame.Heartbeat>().last()
        assertEquals(NodeState.PAUSED, hb.state)
        assertEquals(net.traffix.core.protocol.PauseCode.NOT_ON_WIFI, hb.pauseReason)
        assertEquals(1, s.sentOf<Frame.Drain>().size)
        assertNotNull(s.closedWith)
        assertEquals(Phase.PAUSED, a.status.phase)
        assertNull("a pause is not an error", a.status.lastError)

        // Back on Wi-Fi: a new tunnel, serving.
        val n = transport.sockets.size
        a.updateDevice(wifi)
        sched.runDue()
        assertEquals(n + 1, transport.sockets.size)
        val s2 = transport.last
        s2.open()
        s2.deliver(Frame.Challenge(1, nonce, 0))
        sched.runDue()
        s2.deliver(welcome())
        sched.runDue()
        assertEquals(Phase.SERVING, a.status.phase)
        assertEquals(NodeState.SERVING, s2.sentOf<Frame.Heartbeat>().last().state)
    }

    @Test
    fun theEgressPolicyRefusesBeforeAnyDial() {
        val a = agent(allowPrivate = false)
        val s = serving(a)
        s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(10, 0, 0, 1), 80))))
        s.deliver(Frame.Open(5, 65_536, Target.Ip(SocketAddr(IpAddr.v4(93, 184, 216, 34), 25))))
        s.deliver(Frame.Open(7, 65_536, Target.Domain("printer.local", 80)))
        s.deliver(Frame.Open(9, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), 8443))))
        sched.runUntil { s.sentOf<Frame.OpenErr>().size == 4 }
        for (e in s.sentOf<Frame.OpenErr>()) assertEquals(e.toString(), OpenErrReason.REFUSED_BY_POLICY, e.reason)
        // The status is republished on the scheduler after each stream thread ends: wait for it
        // rather than read it right after the fourth OPEN_ERR went out.
        sched.runUntil { a.status.streamsRefused == 4L && a.status.activeStreams == 0 }
        sched.runUntil { logs.count { it.startsWith("DEBUG open refused") } == 4 }
        assertTrue("no client target in the node's log: $logs", logs.none { it.contains("10.0.0.1") || it.contains("printer.local") })
    }

    @Test
    fun aStreamStartsWithItsShareOfHalfTheBudgetSoStalledStreamsCannotHoldItAll() {
        // 4 MiB budget, 64 streams: 32 KiB each to start (64 stalled streams hold half).
        assertEquals(32L * 1024, Agent.streamWindow(262_144, 4L shl 20, 64))
        assertEquals("one stream: the configured window", 262_144L, Agent.streamWindow(262_144, 4L shl 20, 1))
        assertEquals(Agent.MIN_STREAM_WINDOW, Agent.streamWindow(262_144, 4L shl 20, 100_000))
        assertEquals(262_144L, Agent.streamWindow(262_144, 4L shl 20, 0))
        ServerSocket(0, 50, InetAddress.getLoopbackAddress()).use { target ->
            val a = agent(allowPrivate = true)
            val s = serving(a)
            s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), target.localPort))))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            assertEquals(32L * 1024, s.sentOf<Frame.OpenOk>().single().window)
            a.close()
            sched.runDue()
        }
    }

    @Test
    fun theNodeTakesNoMoreStreamsThanItsCap() {
        ServerSocket(0, 50, InetAddress.getLoopbackAddress()).use { target ->
            val a = agent(settings = ResourceSettings(maxStreams = 1), allowPrivate = true)
            val s = serving(a)
            val to = Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), target.localPort))
            s.deliver(Frame.Open(3, 65_536, to))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            s.deliver(Frame.Open(5, 65_536, to))
            sched.runUntil { s.sentOf<Frame.OpenErr>().isNotEmpty() }
            assertEquals(OpenErrReason.NODE_BUSY, s.sentOf<Frame.OpenErr>().single().reason)
            a.close()
            sched.runDue()
        }
    }

    @Test
    fun aLiveStreamRelaysAndAStopDrainsIt() {
        EchoServer().use { echo ->
            val a = agent(allowPrivate = true)
            val s = serving(a)
            s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), echo.port))))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            val ok = s.sentOf<Frame.OpenOk>().single()
            assertEquals(SocketAddr(IpAddr.v4(127, 0, 0, 1), echo.port), ok.peer)
            s.deliver(Frame.Data(3, false, Bytes.of("hello".toByteArray())))
            sched.runUntil { s.sentOf<Frame.Data>().isNotEmpty() }
            assertEquals("hello", String(s.sentOf<Frame.Data>().single().payload.toByteArray()))

            // The owner stops: DRAIN, no new streams, the live one finishes.
            a.stop()
            sched.runDue()
            assertEquals(Phase.DRAINING, a.status.phase)
            assertEquals(1, s.sentOf<Frame.Drain>().size)
            assertEquals(NodeState.DRAINING, s.sentOf<Frame.Heartbeat>().last().state)
            s.deliver(Frame.Open(5, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), echo.port))))
            sched.runUntil { s.sentOf<Frame.OpenErr>().isNotEmpty() }
            assertEquals(OpenErrReason.DRAINING, s.sentOf<Frame.OpenErr>().single().reason)
            s.deliver(Frame.Data(3, true, Bytes.of(" world".toByteArray())))
            sched.runUntil { a.status.phase == Phase.STOPPED }
            val echoed = s.sentOf<Frame.Data>().filter { it.stream == 3L }
            assertEquals("hello world", echoed.joinToString("") { String(it.payload.toByteArray()) })
            assertTrue("the echo's EOF came back as FIN", echoed.last().fin)
            assertTrue(s.sentOf<Frame.Reset>().isEmpty())
            assertNotNull(s.closedWith)
        }
    }

    @Test
    fun aDataCapCutsLiveStreamsAndPauses() {
        EchoServer().use { echo ->
            val a = agent(settings = ResourceSettings(dailyCapBytes = 100), allowPrivate = true)
            val s = serving(a)
            s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), echo.port))))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            s.deliver(Frame.Data(3, false, Bytes.of(ByteArray(60))))
            sched.runUntil { a.status.phase == Phase.PAUSED && s.sentOf<Frame.Reset>().isNotEmpty() }
            val reset = s.sentOf<Frame.Reset>().single()
            assertEquals(ResetReason.CANCEL, reset.reason)
            assertTrue(reset.message.contains("daily data cap"))
            assertEquals(Action.PAUSE, a.status.decision.action)
            assertEquals(NodeState.PAUSED, s.sentOf<Frame.Heartbeat>().last().state)
            assertEquals(net.traffix.core.protocol.PauseCode.DAILY_CAP, s.sentOf<Frame.Heartbeat>().last().pauseReason)
            assertEquals("the tunnel is closed until the cap resets", 1, s.sentOf<Frame.Drain>().size)
            assertNotNull(s.closedWith)
            assertTrue(a.status.usage.bytesToday >= 100)
        }
    }

    /** Today's date on the test clock (the agent runs in UTC here). */
    private fun today() = java.time.Instant.ofEpochMilli(clock.wallMillis()).atZone(ZoneOffset.UTC).toLocalDate()

    @Test
    fun dataSaverOnAMeteredNetworkCutsLiveStreamsPausesWithItsReasonAndClosesTheTunnel() {
        EchoServer().use { echo ->
            val a = agent(settings = ResourceSettings(wifiOnly = false), allowPrivate = true, sample = cellular)
            val s = serving(a)
            s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), echo.port))))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            a.updateDevice(cellular.copy(dataSaver = true))
            sched.runDue()
            assertEquals(setOf(PauseReason.DATA_SAVER), a.status.decision.reasons)
            assertEquals(Phase.PAUSED, a.status.phase)
            val reset = s.sentOf<Frame.Reset>().single()
            assertEquals(ResetReason.CANCEL, reset.reason)
            assertTrue(reset.message, reset.message.contains("Data Saver"))
            val hb = s.sentOf<Frame.Heartbeat>().last()
            assertEquals(NodeState.PAUSED, hb.state)
            assertEquals(PauseCode.DATA_SAVER, hb.pauseReason)
            assertEquals(1, s.sentOf<Frame.Drain>().size)
            assertNotNull("the tunnel is closed", s.closedWith)
            // Data Saver off: a new tunnel at once.
            val n = transport.sockets.size
            a.updateDevice(cellular)
            sched.runDue()
            assertEquals(n + 1, transport.sockets.size)
            assertEquals(Phase.CONNECTING, a.status.phase)
            a.close()
            sched.runDue()
        }
    }

    @Test
    fun wifiOnlyJudgesMeteredAndRoamingNotTheTransport() {
        // A phone's hotspot: Wi-Fi, but metered.
        val a = agent(settings = ResourceSettings(wifiOnly = true))
        val s = serving(a)
        a.updateDevice(wifi.copy(metered = true))
        sched.runDue()
        assertEquals(Phase.PAUSED, a.status.phase)
        assertEquals(PauseCode.NOT_ON_WIFI, s.sentOf<Frame.Heartbeat>().last().pauseReason)
        assertNotNull(s.closedWith)
        // An unmetered mobile plan counts; roaming on it does not.
        a.updateDevice(DeviceSample(NetworkType.CELLULAR, 80, false, metered = false))
        sched.runDue()
        val s2 = transport.last
        assertTrue(s2 !== s)
        s2.open()
        s2.deliver(Frame.Challenge(1, nonce, 0))
        sched.runDue()
        s2.deliver(welcome())
        sched.runDue()
        assertEquals(Phase.SERVING, a.status.phase)
        assertEquals(NodeState.SERVING, s2.sentOf<Frame.Heartbeat>().last().state)
        a.updateDevice(DeviceSample(NetworkType.CELLULAR, 80, false, metered = false, roaming = true))
        sched.runDue()
        assertEquals(Phase.PAUSED, a.status.phase)
        assertEquals(PauseCode.NOT_ON_WIFI, s2.sentOf<Frame.Heartbeat>().last().pauseReason)
        assertNotNull(s2.closedWith)
    }

    @Test
    fun batterySaverOnBatteryLetsLiveStreamsFinishThenPausesWithItsReason() {
        EchoServer().use { echo ->
            val a = agent(allowPrivate = true)
            val s = serving(a)
            s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), echo.port))))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            a.updateDevice(wifi.copy(batterySaver = true))
            sched.runDue()
            // Soft: draining, the live stream carries on.
            assertEquals(Action.DRAIN, a.status.decision.action)
            assertEquals(NodeState.DRAINING, s.sentOf<Frame.Heartbeat>().last().state)
            assertTrue(s.sentOf<Frame.Reset>().isEmpty())
            assertNull(s.closedWith)
            s.deliver(Frame.Data(3, true, Bytes.of("bye".toByteArray())))
            sched.runUntil { a.status.phase == Phase.PAUSED }
            val hb = s.sentOf<Frame.Heartbeat>().last()
            assertEquals(NodeState.PAUSED, hb.state)
            assertEquals(PauseCode.BATTERY_SAVER, hb.pauseReason)
            assertTrue("the stream finished, not cut", s.sentOf<Frame.Reset>().isEmpty())
            assertNotNull(s.closedWith)
        }
    }

    @Test
    fun theRadiosCountDrivesTheCapsAndTheHeartbeatAndCutsAtOnce() {
        EchoServer().use { echo ->
            val a = agent(settings = ResourceSettings(dailyCapBytes = 10_000), allowPrivate = true)
            val s = serving(a)
            s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), echo.port))))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            // The radio's count replaces the relayed one: the next heartbeat reports it.
            a.updateUsage(net.traffix.core.policy.DataUsage(today(), bytesToday = 4_000, bytesMonth = 7_000))
            sched.runDue()
            assertEquals(4_000L, a.status.usage.bytesToday)
            sched.advance(15_000)
            val hb = s.sentOf<Frame.Heartbeat>().last()
            assertEquals(NodeState.SERVING, hb.state)
            assertEquals(4_000L, hb.bytesToday)
            assertEquals(7_000L, hb.bytesMonth)
            // The radio reaches the cap: the live stream is cut at once, paused with the reason.
            a.updateUsage(net.traffix.core.policy.DataUsage(today(), bytesToday = 10_000, bytesMonth = 13_000))
            sched.runDue()
            assertEquals(Phase.PAUSED, a.status.phase)
            val reset = s.sentOf<Frame.Reset>().single()
            assertEquals(ResetReason.CANCEL, reset.reason)
            val paused = s.sentOf<Frame.Heartbeat>().last()
            assertEquals(NodeState.PAUSED, paused.state)
            assertEquals(PauseCode.DAILY_CAP, paused.pauseReason)
            assertEquals(10_000L, paused.bytesToday)
            assertNotNull(s.closedWith)
            // A new day: the radio's count starts again and the node comes back.
            clock.advanceMillis(86_400_000)
            val n = transport.sockets.size
            a.updateUsage(net.traffix.core.policy.DataUsage(today(), bytesToday = 0, bytesMonth = 13_000))
            sched.runDue()
            assertEquals(n + 1, transport.sockets.size)
            assertEquals(Phase.CONNECTING, a.status.phase)
            a.close()
            sched.runDue()
        }
    }

    @Test
    fun bytesRelayedBetweenRadioSamplesStillReachTheCap() {
        EchoServer().use { echo ->
            val a = agent(settings = ResourceSettings(dailyCapBytes = 1_000), allowPrivate = true)
            val s = serving(a)
            a.updateUsage(net.traffix.core.policy.DataUsage(today(), bytesToday = 950, bytesMonth = 950))
            sched.runDue()
            assertEquals(Phase.SERVING, a.status.phase)
            s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), echo.port))))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            // 60 bytes in and their echo out: past the cap before the radio is read again.
            s.deliver(Frame.Data(3, false, Bytes.of(ByteArray(60))))
            sched.runUntil { a.status.phase == Phase.PAUSED && s.sentOf<Frame.Reset>().isNotEmpty() }
            assertEquals(PauseCode.DAILY_CAP, s.sentOf<Frame.Heartbeat>().last().pauseReason)
            assertTrue(a.status.usage.bytesToday >= 1_000)
        }
    }

    @Test
    fun dialsUseTheConfiguredSocketFactory() {
        ServerSocket(0, 50, InetAddress.getLoopbackAddress()).use { target ->
            val made = java.util.concurrent.atomic.AtomicInteger(0)
            val counting =
                object : javax.net.SocketFactory() {
                    private val d = javax.net.SocketFactory.getDefault()

                    override fun createSocket(): java.net.Socket = d.createSocket().also { made.incrementAndGet() }

                    override fun createSocket(host: String?, port: Int): java.net.Socket = throw AssertionError("connected sockets are not used")

                    override fun createSocket(host: String?, port: Int, local: InetAddress?, localPort: Int): java.net.Socket =
                        throw AssertionError("connected sockets are not used")

                    override fun createSocket(host: InetAddress?, port: Int): java.net.Socket = throw AssertionError("connected sockets are not used")

                    override fun createSocket(host: InetAddress?, port: Int, local: InetAddress?, localPort: Int): java.net.Socket =
                        throw AssertionError("connected sockets are not used")
                }
            val a =
                Agent(
                    AgentConfig(link, true, allowPrivateTargets = true, socketFactory = counting),
                    signer,
                    transport,
                    listener,
                    ResourceSettings(),
                    wifi,
                    clock = clock,
                    zone = ZoneOffset.UTC,
                    scheduler = sched,
                    random = { 0.5 },
                    streamPool = pool,
                )
            val s = serving(a)
            s.deliver(Frame.Open(3, 65_536, Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 1), target.localPort))))
            sched.runUntil { s.sentOf<Frame.OpenOk>().isNotEmpty() }
            assertEquals(1, made.get())
            a.close()
            sched.runDue()
        }
    }

    @Test
    fun aServerDrainEndsTheTunnelAndReconnects() {
        val a = agent()
        val s = serving(a)
        s.deliver(Frame.Drain("server shutting down", 10))
        sched.runDue()
        assertEquals(Phase.BACKING_OFF, a.status.phase)
        val n = transport.sockets.size
        sched.advance(a.status.retryAtMillis!! - clock.wallMillis())
        assertEquals(n + 1, transport.sockets.size)
    }

    @Test
    fun stoppingWhileBackingOffStopsAtOnce() {
        val a = agent()
        a.start()
        sched.runDue()
        transport.last.drop()
        sched.runDue()
        a.stop()
        sched.runDue()
        assertEquals(Phase.STOPPED, a.status.phase)
        val n = transport.sockets.size
        sched.advance(120_000)
        assertEquals(n, transport.sockets.size)
    }

    @Test
    fun anInsecureLinkIsRefusedUnlessAllowed() {
        val a =
            Agent(AgentConfig(link.copy(insecure = true), true), signer, transport, listener, ResourceSettings(), wifi, clock = clock, scheduler = sched, streamPool = pool)
        a.start()
        sched.runDue()
        assertEquals(Phase.FAILED, a.status.phase)
        assertTrue(transport.sockets.isEmpty())
    }

    @Test
    fun aKeyStoreThatCannotSignBacksOffInsteadOfCrashing() {
        val broken =
            object : net.traffix.core.identity.DeviceSigner by signer {
                override fun sign(message: ByteArray): Bytes = throw net.traffix.core.identity.SigningException("user locked the key")
            }
        val a =
            Agent(AgentConfig(link, true), broken, transport, listener, ResourceSettings(), wifi, clock = clock, scheduler = sched, random = { 0.5 }, streamPool = pool)
        a.start()
        sched.runDue()
        transport.last.open()
        transport.last.deliver(Frame.Challenge(1, nonce, 0))
        sched.runDue()
        assertEquals(Phase.BACKING_OFF, a.status.phase)
        assertEquals(AgentError(AgentError.Kind.KEY_CANNOT_SIGN, detail = "user locked the key"), a.status.lastError)
    }

    /** Echoes every byte back and closes its side after the client's EOF. */
    private class EchoServer : AutoCloseable {
        private val server = ServerSocket(0, 50, InetAddress.getLoopbackAddress())
        val port: Int = server.localPort
        private val thread =
            Thread {
                try {
                    while (true) {
                        val c = server.accept()
                        Thread {
                            c.use {
                                val buf = ByteArray(8192)
                                val input = it.getInputStream()
                                val out = it.getOutputStream()
                                while (true) {
                                    val n = input.read(buf)
                                    if (n < 0) break
                                    out.write(buf, 0, n)
                                    out.flush()
                                }
                                it.shutdownOutput()
                            }
                        }.start()
                    }
                } catch (_: IOException) {
                }
            }.apply {
                isDaemon = true
                start()
            }

        override fun close() = server.close()
    }
}
