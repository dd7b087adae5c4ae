package net.traffix.core.e2e

import com.sun.net.httpserver.HttpServer
import java.io.File
import java.net.HttpURLConnection
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.URL
import java.nio.file.Files
import java.security.MessageDigest
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import net.traffix.core.agent.Agent
import net.traffix.core.agent.AgentError
import net.traffix.core.agent.AgentConfig
import net.traffix.core.agent.AgentListener
import net.traffix.core.agent.DeviceSample
import net.traffix.core.agent.Phase
import net.traffix.core.egress.EgressPolicy
import net.traffix.core.identity.DeviceSigner
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.Action
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.protocol.Handshake
import net.traffix.core.protocol.NetworkType
import net.traffix.core.testing.AttestingSigner
import net.traffix.core.testing.SoftwareSigner
import net.traffix.core.testing.TestAttestationCa
import net.traffix.core.transport.OkHttpTransport
import net.traffix.core.transport.SocketTransport
import net.traffix.core.transport.TunnelTransport
import net.traffix.core.util.Bytes
import net.traffix.core.util.Hex
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Before
import org.junit.Test

/**
 * The Kotlin core as a node against the real `traffix serve` over TLS, with clients nobody here
 * wrote (curl, python-socks): the same rig as the Rust E2E tests (tests/common/mod.rs), with the
 * Kotlin [Agent] and [SocketTransport] (the app's) in place of `traffix node`; one test runs the
 * node over [OkHttpTransport], a WebSocket client nobody here wrote.
 *
 * The binary comes from the system property `traffix.bin` (scripts/test-core.sh builds it and
 * sets it; a Gradle run without a Rust build skips these tests, test-core.sh never does).
 */
class ServerE2ETest {
    private lateinit var server: TraffixServer
    private lateinit var origin: Origin
    private val agents = ArrayList<Agent>()
    private lateinit var password: String

    @Before
    fun setUp() {
        val bin = System.getProperty("traffix.bin")
        assumeTrue("traffix.bin not set: no Rust build to test against", bin != null)
        check(File(bin).canExecute()) { "traffix.bin=$bin is not an executable" }
        origin = Origin()
        // Heartbeats (and the server's tally in their ACKs) every 5 s, busy or idle, so a test
        // waits seconds for them, not the default idle minute.
        server =
            TraffixServer(
                File(bin),
                mapOf("TRAFFIX_LIMITS__HEARTBEAT_INTERVAL_SECS" to "5", "TRAFFIX_LIMITS__HEARTBEAT_IDLE_INTERVAL_SECS" to "5"),
            )
        password = server.addUser("alice", credit = "10")
        // The node's owner: another user, so the traffic earns (self-use pays only the fee).
        server.addUser("bob", credit = "0")
    }

    @After
    fun tearDown() {
        for (a in agents) a.close()
        if (::server.isInitialized) server.close()
        if (::origin.isInitialized) origin.close()
    }

    private fun startNode(
        link: PairLink,
        blockedPorts: List<IntRange> = EgressPolicy.DEFAULT_BLOCKED_PORTS,
        settings: ResourceSettings = ResourceSettings(wifiOnly = false, batteryFloorPct = null),
        transport: TunnelTransport = SocketTransport(),
    ): Agent {
        val a =
            Agent(
                AgentConfig(link, paired = false, allowPrivateTargets = true, blockedPorts = blockedPorts, agentName = "traffix-core-e2e"),
                SoftwareSigner.newP256(),
                transport,
                object : AgentListener {},
                settings,
                DeviceSample(NetworkType.ETHERNET, batteryPct = null, charging = false),
            )
        agents.add(a)
        a.start()
        waitFor("the Kotlin node online") { a.status.phase == Phase.SERVING && server.onlineDevices() == 1 }
        return a
    }

    private fun pairLink(): PairLink = (PairLink.parse(server.pairLink("bob")) as PairLink.Result.Ok).link

    private fun socks(): String = "socks5h://alice:$password@${server.socks}"

    /** Downloads [path] from the origin through the node with curl; returns the body's SHA-256 or fails. */
    private fun fetch(path: String): String {
        val out = Files.createTempFile("traffix-e2e", ".bin").toFile()
        try {
            val r = run("curl", "-sS", "--fail", "--max-time", "60", "-x", socks(), "-o", out.path, "http://${origin.addr}$path")
            assertEquals("curl $path: ${r.second}", 0, r.first)
            return sha256(out.readBytes())
        } finally {
            out.delete()
        }
    }

    /** The server's "node online" lines: whether each node's frames went unmasked. */
    private fun unmaskedOnline(): List<String> =
        server.log().lines().filter { it.contains("node online") }.map { Regex("unmasked=(\\w+)").find(it)?.groupValues?.get(1) ?: "absent" }

    @Test
    fun curlThroughTheKotlinNodeGetsAnIntactPayload() {
        val a = startNode(pairLink())
        // The node offered x-traffix-unmasked over TLS and the server accepted it.
        assertEquals(listOf("true"), unmaskedOnline())
        downloadAndUpload()
        // The status is a snapshot the agent publishes as streams end, just after curl is done.
        waitFor("both streams counted, with their bytes", detail = { "${a.status}" }) {
            a.status.streamsServed >= 2 && a.status.usage.bytesToday >= (1 shl 20) + 300_000
        }
        // The server's count for today comes back in HEARTBEAT_ACK: what the owner's notification shows.
        waitFor("the server's tally in a HEARTBEAT_ACK", detail = { "${a.status.server}" }) {
            val t = a.status.server
            t != null && (t.bytesToday ?: 0) >= (1 shl 20) + 300_000 && (t.earnedToday ?: 0) > 0
        }
        assertEquals("USD", a.status.server!!.currency)
    }

    /** 1 MiB down and 300 kB up through the node with curl, both intact. */
    private fun downloadAndUpload() {
        assertEquals(Origin.expectedSha(1 shl 20, 1), fetch("/bytes/${1 shl 20}/1"))
        // Upload too: the origin hashes what it received.
        val body = Origin.payload(300_000, 9)
        val file = Files.createTempFile("traffix-up", ".bin").toFile().apply { writeBytes(body) }
        try {
            val r = run("curl", "-sS", "--fail", "-x", socks(), "--data-binary", "@${file.path}", "http://${origin.addr}/sha256")
            assertEquals("curl exit ${r.first}: ${r.second}", 0, r.first)
            assertEquals("${body.size} ${sha256(body)}", r.second.trim())
        } finally {
            file.delete()
        }
    }

    /** The server takes a node whose WebSocket is OkHttp's (frames, masking and close not ours). */
    @Test
    fun aNodeOnOkHttpsWebSocketCarriesTheSameStreams() {
        startNode(pairLink(), transport = OkHttpTransport())
        assertEquals("OkHttp never offers the extension: its frames stay masked", listOf("false"), unmaskedOnline())
        downloadAndUpload()
    }

    @Test
    fun aHardPauseClosesTheTunnelTheServerShowsItPausedAndItComesBack() {
        val a = startNode(pairLink(), settings = ResourceSettings(wifiOnly = true, batteryFloorPct = null))
        // The phone leaves Wi-Fi: paused (not_on_wifi), DRAIN, the tunnel closes.
        a.updateDevice(DeviceSample(NetworkType.CELLULAR, batteryPct = null, charging = false))
        waitFor("the Kotlin node paused with its tunnel closed", detail = { "${a.status} ${server.devices()}" }) {
            a.status.phase == Phase.PAUSED && server.onlineDevices() == 0 && server.pausedDevices("not_on_wifi") >= 1
        }
        // Back on Wi-Fi: it reconnects and serves.
        a.updateDevice(DeviceSample(NetworkType.ETHERNET, batteryPct = null, charging = false))
        waitFor("the Kotlin node back") { a.status.phase == Phase.SERVING && server.onlineDevices() == 1 }
        assertEquals(Origin.expectedSha(1000, 1), fetch("/bytes/1000/1"))
    }

    @Test
    fun thePhonesOwnFactsPauseWithTheirReasonOnTheServer() {
        val a = startNode(pairLink(), settings = ResourceSettings(wifiOnly = false, batteryFloorPct = null, dailyCapBytes = 50_000_000))
        // Data Saver on a metered network: paused (data_saver), the server shows it, not offline.
        a.updateDevice(DeviceSample(NetworkType.CELLULAR, batteryPct = null, charging = false, dataSaver = true))
        waitFor("the Kotlin node paused by Data Saver", detail = { "${a.status} ${server.devices()}" }) {
            a.status.phase == Phase.PAUSED && server.onlineDevices() == 0 && server.pausedDevices("data_saver") >= 1
        }
        a.updateDevice(DeviceSample(NetworkType.CELLULAR, batteryPct = null, charging = false))
        waitFor("the Kotlin node back") { a.status.phase == Phase.SERVING && server.onlineDevices() == 1 }
        // The radio's count reaches the daily cap: paused (daily_cap).
        val today = java.time.LocalDate.now()
        a.updateUsage(net.traffix.core.policy.DataUsage(today, bytesToday = 50_000_000, bytesMonth = 50_000_000))
        waitFor("the Kotlin node paused at the radio's cap", detail = { "${a.status} ${server.devices()}" }) {
            a.status.phase == Phase.PAUSED && server.onlineDevices() == 0 && server.pausedDevices("daily_cap") >= 1
        }
    }

    @Test
    fun manyConcurrentStreamsAllArriveIntact() {
        val a = startNode(pairLink())
        val dir = Files.createTempDirectory("traffix-many").toFile()
        try {
            val n = 24
            // Connection: close, so that every transfer is a stream of its own (no keep-alive reuse).
            val args = arrayListOf("curl", "-sS", "--fail", "-Z", "--parallel-max", "$n", "-H", "Connection: close", "-x", socks())
            for (i in 0 until n) args += listOf("-o", File(dir, "$i").path, "http://${origin.addr}/bytes/${200_000 + i * 1000}/$i")
            val r = run(*args.toTypedArray())
            assertEquals(r.second, 0, r.first)
            for (i in 0 until n) {
                assertEquals("stream $i", Origin.expectedSha(200_000 + i * 1000, i), sha256(File(dir, "$i").readBytes()))
            }
            waitFor("$n streams counted", detail = { "${a.status}" }) { a.status.streamsServed >= n }
        } finally {
            dir.deleteRecursively()
        }
    }

    @Test
    fun aTargetTheNodesPolicyRefusesReachesTheClientAsSocksCodeTwo() {
        // The server allows the port; only the Kotlin node's egress policy blocks it.
        val forbidden = Origin()
        try {
            val blocked = EgressPolicy.DEFAULT_BLOCKED_PORTS + listOf(forbidden.port..forbidden.port)
            val a = startNode(pairLink(), blocked)
            val r = socksResult("127.0.0.1", forbidden.port)
            assertTrue(r, r.startsWith("code 2"))
            waitFor("the refusal counted by the node", detail = { "${a.status}" }) { a.status.streamsRefused == 1L }
            assertEquals(0, forbidden.hits)
            assertEquals("ok", socksResult("127.0.0.1", origin.port))
        } finally {
            forbidden.close()
        }
    }

    @Test
    fun theServerStopsRoutingToANodeNearItsOwnersDataCap() {
        val cap = 3_000_000L
        val a = startNode(pairLink(), settings = ResourceSettings(wifiOnly = false, batteryFloorPct = null, dailyCapBytes = cap))
        // 2.2 MB puts the node within the server's margin (1 MiB) of its 3 MB cap, not at it.
        assertEquals(Origin.expectedSha(2_200_000, 6), fetch("/bytes/2200000/6"))
        waitFor("the server to stop routing to the node", detail = { "${a.status}" }) {
            socksResult("127.0.0.1", origin.port).startsWith("code 3")
        }
        assertEquals("the node itself has not reached its cap", Action.SERVE, a.status.decision.action)
        assertTrue(a.status.usage.bytesToday < cap)
    }

    @Test
    fun theNodeComesBackAfterTheServerRestarts() {
        val a = startNode(pairLink())
        assertEquals(Origin.expectedSha(50_000, 3), fetch("/bytes/50000/3"))
        server.restart()
        waitFor("the node back online after the restart") { a.status.phase == Phase.SERVING && server.onlineDevices() == 1 }
        assertEquals("one device: it reconnected with its key, not a new pairing", 1, server.deviceCount())
        assertEquals(Origin.expectedSha(50_000, 4), fetch("/bytes/50000/4"))
    }

    @Test
    fun aDrainFinishesTheLiveStreamAndTakesNoNewOnes() {
        val a = startNode(pairLink())
        val size = 400_000
        val out = Files.createTempFile("traffix-drain", ".bin").toFile()
        val curl =
            ProcessBuilder("curl", "-v", "-sS", "--fail", "--max-time", "60", "-x", socks(), "-o", out.path, "http://${origin.holdAddr}/hold/$size/5")
                .redirectErrorStream(true)
                .start()
        try {
            waitFor("the first half through the node", detail = { "\n${a.status}\n${String(curl.inputStream.readNBytes(curl.inputStream.available()))}\nserver log:\n${server.logTail()}" }) {
                check(curl.isAlive) { "curl ended early: ${String(curl.inputStream.readBytes())}" }
                // A quarter: curl's stdio buffer may hold the last few KiB of the half that came.
                out.length() >= size / 4
            }
            a.stop()
            waitFor("the node draining") { a.status.phase == Phase.DRAINING }
            val refused = socksResult("127.0.0.1", origin.port)
            assertNotEquals("no new stream while draining", "ok", refused)
            assertEquals("the live stream is untouched", 1, a.status.activeStreams)
            origin.release()
            assertTrue(curl.waitFor(60, TimeUnit.SECONDS))
            assertEquals(String(curl.inputStream.readBytes()), 0, curl.exitValue())
            assertEquals(Origin.expectedSha(size, 5), sha256(out.readBytes()))
            waitFor("the node stopped once its stream was done") { a.status.phase == Phase.STOPPED }
            waitFor("the server sees it offline") { server.onlineDevices() == 0 }
        } finally {
            curl.destroyForcibly()
            out.delete()
        }
    }

    @Test
    fun aPhoneWithAHardwareChainPairsWhereTheServerRequiresHardware() {
        val ca = TestAttestationCa()
        val roots = Files.createTempFile("traffix-roots", ".pem").toFile().apply { writeText(ca.pem()) }
        val env = mapOf("TRAFFIX_TRUST__ROOTS" to roots.path, "TRAFFIX_TRUST__REQUIRE" to "hardware")
        TraffixServer(File(System.getProperty("traffix.bin")), env).use { strict ->
            strict.addUser("bob", credit = "0")
            val link = (PairLink.parse(strict.pairLink("bob")) as PairLink.Result.Ok).link
            fun agent(signer: DeviceSigner): Agent =
                Agent(
                    AgentConfig(link, paired = false, allowPrivateTargets = true, agentName = "traffix-core-e2e"),
                    signer,
                    SocketTransport(),
                    object : AgentListener {},
                    ResourceSettings(wifiOnly = false, batteryFloorPct = null),
                    DeviceSample(NetworkType.ETHERNET, batteryPct = null, charging = false),
                ).also { agents.add(it); it.start() }
            // A software-level key: refused, with the reason, and the code stays usable.
            val weak = agent(AttestingSigner(ca, securityLevel = 0))
            waitFor("the software-level phone refused", detail = { "${weak.status}" }) {
                weak.status.lastError?.detail?.contains("requires device trust hardware") == true
            }
            weak.close()
            // A StrongBox key made for this link's challenge pairs and serves.
            val signer = AttestingSigner(ca, securityLevel = 2)
            val good = agent(signer)
            waitFor("the hardware phone online", detail = { "${good.status}\n${strict.logTail()}" }) {
                good.status.phase == Phase.SERVING && strict.onlineDevices() == 1
            }
            assertEquals(listOf(Handshake.attestationChallenge(link.pin, link.code)), signer.challenges.toList())
            val listed = strict.cli("device", "list", "--json")
            assertTrue(listed, Regex(""""trust"\s*:\s*"hardware"""").containsMatchIn(listed))
            assertTrue(listed, Regex(""""security_level"\s*:\s*"strongbox"""").containsMatchIn(listed))
        }
    }

    @Test
    fun aWrongPinNeverConnects() {
        val good = pairLink()
        val bad = good.copy(pin = Bytes.of(ByteArray(32) { 1 }))
        val a =
            Agent(
                AgentConfig(bad, paired = false, allowPrivateTargets = true),
                SoftwareSigner.newP256(),
                SocketTransport(),
                object : AgentListener {},
                ResourceSettings(wifiOnly = false, batteryFloorPct = null),
                DeviceSample(NetworkType.ETHERNET, null, false),
            )
        agents.add(a)
        a.start()
        waitFor("a pin failure") { a.status.phase == Phase.BACKING_OFF && a.status.lastError != null }
        assertEquals(AgentError.Kind.CANNOT_CONNECT, a.status.lastError!!.kind)
        assertTrue("${a.status.lastError}", a.status.lastError!!.detail.contains("pin"))
        assertEquals(0, server.deviceCount())
    }

    /** One SOCKS5 CONNECT with python-socks (which exposes the reply code): "ok" or "code N …". */
    private fun socksResult(host: String, port: Int): String {
        val script =
            """
            from python_socks.sync import Proxy
            from python_socks import ProxyError
            p = Proxy.from_url("socks5://alice:$password@${server.socks}", rdns=True)
            try:
                s = p.connect(dest_host="$host", dest_port=$port, timeout=30)
                print("ok")
            except ProxyError as e:
                print("code", e.error_code, str(e))
            """.trimIndent()
        val r = run("python3", "-c", script)
        assertEquals(r.second, 0, r.first)
        return r.second.trim()
    }

    companion object {
        fun sha256(b: ByteArray): String = Hex.encode(MessageDigest.getInstance("SHA-256").digest(b))

        /** Runs a command to completion: (exit status, stdout and stderr). */
        fun run(vararg cmd: String): kotlin.Pair<Int, String> {
            val p = ProcessBuilder(*cmd).redirectErrorStream(true).start()
            val out = String(p.inputStream.readBytes())
            check(p.waitFor(120, TimeUnit.SECONDS)) { "${cmd[0]} did not finish" }
            return kotlin.Pair(p.exitValue(), out)
        }

        /** Polls [cond] (events on real sockets and processes; a deadline, not a timing assertion). */
        fun waitFor(what: String, seconds: Long = 30, detail: () -> String = { "" }, cond: () -> Boolean) {
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
            while (!cond()) {
                check(System.nanoTime() < deadline) { "timed out waiting for $what ${detail()}" }
                Thread.sleep(50)
            }
        }
    }
}

/** A `traffix serve` on its own data directory and loopback ports, as tests/common/mod.rs starts it. */
class TraffixServer(private val bin: File, private val env: Map<String, String> = emptyMap()) : AutoCloseable {
    private val dir: File = Files.createTempDirectory("traffix-kotlin-e2e").toFile()
    private var process: Process? = null
    val socks: String
    private val metrics: String

    init {
        val init =
            cli(
                "init", "--web-listen", "127.0.0.1:0", "--socks-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                "--metrics-listen", "127.0.0.1:0", "--json",
            )
        check(init.contains("\"pin\"")) { "init printed no pin: $init" }
        val toml = File(dir, "traffix.toml").readText()
        fun listen(key: String): String =
            Regex("""(?m)^$key\s*=\s*"([^"]+)"""").find(toml)?.groupValues?.get(1) ?: error("traffix.toml lacks $key")
        socks = listen("socks_listen")
        metrics = listen("metrics_listen")
        spawn()
    }

    /** Runs `traffix ARGS --data-dir DIR`, which must succeed; returns stdout. */
    fun cli(vararg args: String): String {
        val p = ProcessBuilder(listOf(bin.path) + args + listOf("--data-dir", dir.path)).redirectError(ProcessBuilder.Redirect.PIPE).start()
        val out = String(p.inputStream.readBytes())
        val err = String(p.errorStream.readBytes())
        check(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0) { "traffix ${args.joinToString(" ")} failed: $err" }
        return out
    }

    /** Adds a user, credits it, and returns the proxy password. */
    fun addUser(name: String, credit: String): String {
        val out = cli("user", "add", name, "--json")
        if (credit != "0") cli("user", "credit", name, credit, "--reason", "e2e")
        return Regex(""""proxy_password"\s*:\s*"([^"]+)"""").find(out)?.groupValues?.get(1) ?: error("no proxy_password in $out")
    }

    fun pairLink(user: String): String {
        val out = cli("pair", user, "--json")
        return Regex(""""link"\s*:\s*"([^"]+)"""").find(out)?.groupValues?.get(1) ?: error("no link in $out")
    }

    /** The server's whole log. */
    fun log(): String = File(dir, "serve.log").readText()

    /** The end of the server's log, for failure messages. */
    fun logTail(lines: Int = 40): String = File(dir, "serve.log").readLines().takeLast(lines).joinToString("\n")

    private fun devicesJson(): String = cli("device", "list", "--json")

    /** The vIP of the one device whose vIP is not [vip] (benchmarks pair two nodes). */
    fun vipOtherThan(vararg vip: String): String = vips().first { it !in vip }

    /** The VIPs of every device the server lists. */
    fun vips(): List<String> = Regex(""""vip"\s*:\s*"([^"]+)"""").findAll(devicesJson()).map { it.groupValues[1] }.toList()

    /** Pairs and starts the Rust agent (`traffix node`) with [link]; the caller stops it. */
    fun startRustNode(link: String): Process {
        val state = File(dir, "rust-node.json")
        val pb = ProcessBuilder(bin.path, "node", "--state", state.path, "--pair", link, "--allow-private-targets")
        pb.environment()["RUST_LOG"] = "warn"
        pb.redirectOutput(ProcessBuilder.Redirect.DISCARD)
        pb.redirectError(ProcessBuilder.Redirect.appendTo(File(dir, "rust-node.log")))
        return pb.start()
    }

    fun deviceCount(): Int = Regex(""""vip"\s*:""").findAll(devicesJson()).count()

    fun onlineDevices(): Int = Regex(""""online"\s*:\s*true""").findAll(devicesJson()).count()

    /** How many times the device list says `pause_reason: reason` (the device, and its quality view while the watchdog has one). */
    fun pausedDevices(reason: String): Int = Regex("\"pause_reason\"\\s*:\\s*\"$reason\"").findAll(devicesJson()).count()

    fun devices(): String = devicesJson()

    private fun spawn() {
        File(dir, "admin.sock").delete()
        val pb = ProcessBuilder(bin.path, "serve", "--data-dir", dir.path, "--allow-private-targets")
        pb.environment()["RUST_LOG"] = "info,traffix=debug"
        // Heartbeats every second, so the node hears its HEARTBEAT_ACK tally soon.
        pb.environment()["TRAFFIX_LIMITS__HEARTBEAT_INTERVAL_SECS"] = "1"
        pb.environment().putAll(env)
        pb.redirectOutput(ProcessBuilder.Redirect.DISCARD)
        pb.redirectError(ProcessBuilder.Redirect.appendTo(File(dir, "serve.log")))
        val p = pb.start()
        process = p
        ServerE2ETest.waitFor("traffix serve healthy") {
            check(p.isAlive) { "traffix serve exited: ${File(dir, "serve.log").readText()}" }
            healthy() && File(dir, "admin.sock").exists()
        }
    }

    private fun healthy(): Boolean =
        try {
            val c = URL("http://$metrics/healthz").openConnection() as HttpURLConnection
            c.connectTimeout = 1000
            c.readTimeout = 1000
            c.responseCode == 200
        } catch (e: java.io.IOException) {
            false
        }

    /** SIGTERM (the server drains its nodes), then the same data directory and ports again. */
    fun restart() {
        stop()
        spawn()
    }

    private fun stop() {
        process?.let {
            it.destroy()
            if (!it.waitFor(30, TimeUnit.SECONDS)) it.destroyForcibly().waitFor()
        }
        process = null
    }

    override fun close() {
        stop()
        dir.deleteRecursively()
    }
}

/**
 * The targets the node dials: `/bytes/N/SEED` (a deterministic payload) and `/sha256` (hashes an
 * upload) on the JDK's HTTP server; `/hold/N/SEED` on a raw socket of [holdPort] (half the
 * payload, flushed, then the rest once the test calls [release]) — the JDK server buffers a
 * response until it ends, which would hide the first half.
 */
class Origin : AutoCloseable {
    private val server = HttpServer.create(InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 50)
    private val holdServer = java.net.ServerSocket(0, 50, InetAddress.getLoopbackAddress())
    private val held = CountDownLatch(1)
    private val pool = Executors.newCachedThreadPool { r -> Thread(r, "origin").apply { isDaemon = true } }

    @Volatile var hits = 0

    val port: Int get() = server.address.port
    val addr: String get() = "127.0.0.1:$port"
    val holdAddr: String get() = "127.0.0.1:${holdServer.localPort}"

    init {
        server.createContext("/") { ex ->
            hits++
            val parts = ex.requestURI.path.split('/').filter { it.isNotEmpty() }
            try {
                when (parts.firstOrNull()) {
                    "bytes" -> {
                        val body = payload(parts[1].toInt(), parts[2].toInt())
                        ex.sendResponseHeaders(200, body.size.toLong())
                        ex.responseBody.use { it.write(body) }
                    }
                    "stream" -> {
                        // Any size without holding it: one 64 KiB block, repeated.
                        val n = parts[1].toLong()
                        ex.sendResponseHeaders(200, n)
                        ex.responseBody.use { out ->
                            var left = n
                            while (left > 0) {
                                val k = minOf(left, BLOCK.size.toLong()).toInt()
                                out.write(BLOCK, 0, k)
                                left -= k
                            }
                        }
                    }
                    "discard" -> {
                        val buf = ByteArray(64 * 1024)
                        var total = 0L
                        ex.requestBody.use { input ->
                            while (true) {
                                val k = input.read(buf)
                                if (k < 0) break
                                total += k
                            }
                        }
                        val text = "$total".toByteArray()
                        ex.sendResponseHeaders(200, text.size.toLong())
                        ex.responseBody.use { it.write(text) }
                    }
                    "sha256" -> {
                        val got = ex.requestBody.readBytes()
                        val text = "${got.size} ${ServerE2ETest.sha256(got)}".toByteArray()
                        ex.sendResponseHeaders(200, text.size.toLong())
                        ex.responseBody.use { it.write(text) }
                    }
                    else -> {
                        ex.sendResponseHeaders(404, -1)
                        ex.close()
                    }
                }
            } catch (e: java.io.IOException) {
                ex.close()
            }
        }
        server.executor = pool
        server.start()
        pool.execute {
            try {
                while (true) {
                    val c = holdServer.accept()
                    pool.execute { hold(c) }
                }
            } catch (_: java.io.IOException) {
            }
        }
    }

    /** `GET /hold/N/SEED`: headers and N/2 bytes at once, the rest after [release]. */
    private fun hold(c: java.net.Socket) {
        c.use {
            val head = StringBuilder()
            val input = it.getInputStream()
            while (!head.endsWith("\r\n\r\n")) {
                val b = input.read()
                if (b < 0) return
                head.append(b.toChar())
            }
            val parts = head.lineSequence().first().split(' ')[1].split('/').filter { p -> p.isNotEmpty() }
            val n = parts[1].toInt()
            val body = payload(n, parts[2].toInt())
            val out = it.getOutputStream()
            out.write("HTTP/1.1 200 OK\r\nContent-Length: $n\r\nConnection: close\r\n\r\n".toByteArray())
            out.write(body, 0, n / 2)
            out.flush()
            held.await(60, TimeUnit.SECONDS)
            out.write(body, n / 2, n - n / 2)
            out.flush()
        }
    }

    fun release() = held.countDown()

    override fun close() {
        held.countDown()
        server.stop(0)
        holdServer.close()
        pool.shutdownNow()
    }

    companion object {
        /** Deterministic bytes (xorshift) so sender and checker agree without sharing a file. */
        fun payload(n: Int, seed: Int): ByteArray {
            var x = 0x9E3779B97F4A7C15uL.toLong() xor seed.toLong()
            return ByteArray(n) {
                x = x xor (x shl 13)
                x = x xor (x ushr 7)
                x = x xor (x shl 17)
                x.toByte()
            }
        }

        fun expectedSha(n: Int, seed: Int): String = ServerE2ETest.sha256(payload(n, seed))

        private val BLOCK = payload(64 * 1024, 0)
    }
}
