package net.traffix.core.e2e

import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import net.traffix.core.agent.Agent
import net.traffix.core.agent.AgentConfig
import net.traffix.core.agent.AgentListener
import net.traffix.core.agent.DeviceSample
import net.traffix.core.agent.Phase
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.protocol.NetworkType
import net.traffix.core.testing.SoftwareSigner
import net.traffix.core.transport.OkHttpTransport
import net.traffix.core.transport.SocketTransport
import net.traffix.core.transport.TunnelTransport

/*
 * The Kotlin node's data path, measured (android/scripts/bench-core.sh runs it; results in
 * docs/benchmarks.md). One `traffix serve` (TLS on, billing on), two nodes of the same owner —
 * the Rust `traffix node` and the Kotlin core's Agent on the JVM three times: over its own
 * WebSocket framing (SocketTransport, the app's) with unmasked frames negotiated and with masking
 * kept, and over OkHttp's — and curl as the client, each
 * workload run in the same process run against direct TCP, then through each node (pinned with
 * the username option `-node-VIP`). Every figure is printed with its ratio to direct TCP.
 *
 * The JVM is not a phone: this measures the core's own overhead (threads, copies, WebSocket framing) next
 * to the Rust agent on the same machine, not what a phone's radio allows.
 */
fun main(args: Array<String>) {
    val bin = File(args.getOrNull(0) ?: error("usage: NodeBench TRAFFIX_BIN [SCALE]"))
    val scale = args.getOrNull(1)?.toDouble() ?: 1.0
    val downBytes = (256L * 1024 * 1024 * scale).toLong()
    val upBytes = (64L * 1024 * 1024 * scale).toLong()
    val ttfbCount = maxOf((200 * scale).toInt(), 10)
    val parallel = 32
    val parallelBytes = 1L shl 20

    Origin().use { origin ->
        TraffixServer(bin, BENCH_LIMITS).use { server ->
            server.addUser("bob", credit = "0")
            val password = server.addUser("alice", credit = "1000")
            val rust = server.startRustNode(server.pairLink("bob"))
            val kotlin = startKotlinNode(server, SocketTransport())
            val masked = startKotlinNode(server, SocketTransport(offerUnmasked = false))
            val okhttp = startKotlinNode(server, OkHttpTransport())
            val kotlins = listOf(kotlin, masked, okhttp)
            ServerE2ETest.waitFor("all four nodes online", 60) { server.onlineDevices() == 4 && kotlins.all { it.status.vip != null } }
            val rustVip = server.vipOtherThan(*kotlins.map { it.status.vip!! }.toTypedArray())
            val upload = Files.createTempFile("traffix-bench", ".bin").toFile()
            upload.outputStream().use { out ->
                val chunk = Origin.payload(1 shl 20, 1)
                var left = upBytes
                while (left > 0) {
                    val n = minOf(left, chunk.size.toLong()).toInt()
                    out.write(chunk, 0, n)
                    left -= n
                }
            }
            try {
                val paths =
                    listOf(
                        "direct TCP" to emptyList(),
                        "traffix, Rust node" to listOf("-x", "socks5h://alice-node-$rustVip:$password@${server.socks}"),
                        "traffix, Kotlin node (JVM), own framing, unmasked" to listOf("-x", "socks5h://alice-node-${kotlin.status.vip}:$password@${server.socks}"),
                        "traffix, Kotlin node (JVM), own framing, masked" to listOf("-x", "socks5h://alice-node-${masked.status.vip}:$password@${server.socks}"),
                        "traffix, Kotlin node (JVM), OkHttp" to listOf("-x", "socks5h://alice-node-${okhttp.status.vip}:$password@${server.socks}"),
                    )
                println("limits: " + BENCH_LIMITS.entries.joinToString(" ") { "${it.key.removePrefix("TRAFFIX_LIMITS__").lowercase()}=${it.value}" })
                println("NodeBench: ${downBytes shr 20} MiB down, ${upBytes shr 20} MiB up, $ttfbCount × 100 B sequential, $parallel × 1 MiB concurrent; client curl")
                // Warm-up, every path before any is measured: the first streams pay for the TLS
                // session, and the Kotlin nodes share their classes, so whichever Kotlin path
                // came first would also pay for the JIT (a quarter of the download each).
                for ((_, proxy) in paths) curl(proxy, "-w", "%{time_total}", "http://${origin.addr}/stream/${maxOf(downBytes / 4, 1L shl 20)}")
                // Rounds (TRAFFIX_BENCH_ROUNDS, default 2), every path in each, the order of the
                // Kotlin paths reversed every other round: the first Kotlin path measured in a
                // JVM came out slower whatever it was, so compare within a round and across both.
                val rounds = System.getenv("TRAFFIX_BENCH_ROUNDS")?.toIntOrNull() ?: 2
                for (round in 1..rounds) {
                    val order = if (round % 2 == 1) paths else paths.take(2) + paths.drop(2).reversed()
                    val rows = order.map { (name, proxy) -> name to measure(origin, proxy, downBytes, upload, ttfbCount, parallel, parallelBytes) }
                    val direct = rows.first().second
                    println()
                    println("round $round of $rounds")
                    println("| path | ${downBytes shr 20} MiB down | ${upBytes shr 20} MiB up | TTFB p50 / p99 | $parallel × 1 MiB concurrent |")
                    println("|---|---|---|---|---|")
                    for ((name, r) in rows) {
                        fun ratio(a: Double, b: Double) = if (r === direct) "" else " (%.2f×)".format(a / b)
                        println(
                            "| $name | %.2f Gbit/s%s | %.2f Gbit/s%s | %.2f / %.2f ms | %.2f Gbit/s%s |".format(
                                r.down, ratio(r.down, direct.down), r.up, ratio(r.up, direct.up),
                                r.ttfbP50, r.ttfbP99, r.parallel, ratio(r.parallel, direct.parallel),
                            ),
                        )
                    }
                }
            } finally {
                upload.delete()
                kotlins.forEach { it.close() }
                rust.destroy()
                rust.waitFor(10, TimeUnit.SECONDS)
            }
        }
    }
}

/** The `[limits]` profile of benches/tunnel.rs: high client caps, so the workload is not throttled. */
private val BENCH_LIMITS =
    mapOf(
        "CLIENT_MAX_STREAMS" to "4096",
        "CLIENT_MAX_DIALS" to "4096",
        "CLIENT_NEW_STREAMS_PER_S" to "1000000",
        "CLIENT_NEW_STREAMS_BURST" to "1000000",
        "NODE_MAX_STREAMS" to "4096",
        "IDLE_STREAM_TIMEOUT_SECS" to "600",
        "MAX_CONNECTIONS_PER_IP" to "20000",
        "MAX_HANDSHAKES_PER_IP" to "20000",
    ).mapKeys { "TRAFFIX_LIMITS__${it.key}" }

private class Figures(val down: Double, val up: Double, val ttfbP50: Double, val ttfbP99: Double, val parallel: Double)

private fun startKotlinNode(server: TraffixServer, transport: TunnelTransport): Agent {
    val link = (PairLink.parse(server.pairLink("bob")) as PairLink.Result.Ok).link
    val a =
        Agent(
            AgentConfig(link, paired = false, allowPrivateTargets = true, agentName = "traffix-core-bench"),
            SoftwareSigner.newP256(),
            transport,
            object : AgentListener {},
            ResourceSettings(wifiOnly = false, batteryFloorPct = null, maxStreams = 1024),
            DeviceSample(NetworkType.ETHERNET, null, false),
        )
    a.start()
    ServerE2ETest.waitFor("the Kotlin node serving", 60) { a.status.phase == Phase.SERVING }
    return a
}

/** curl's `-w` figures for one transfer; fails loudly when curl does. */
private fun curl(proxy: List<String>, vararg args: String): List<String> {
    val r = ServerE2ETest.run("curl", "-sS", "--fail", "-o", "/dev/null", *proxy.toTypedArray(), *args)
    check(r.first == 0) { "curl ${args.toList()} failed: ${r.second}" }
    return r.second.trim().split(' ')
}

private fun gbit(bytes: Long, seconds: Double) = bytes * 8 / seconds / 1e9

private fun measure(origin: Origin, proxy: List<String>, down: Long, upload: File, ttfbCount: Int, parallel: Int, each: Long): Figures {
    val url = "http://${origin.addr}"
    val downSecs = curl(proxy, "-w", "%{time_total}", "$url/stream/$down")[0].toDouble()
    val upSecs = curl(proxy, "-w", "%{time_total}", "--data-binary", "@${upload.path}", "$url/discard")[0].toDouble()
    val ttfb =
        (0 until ttfbCount).map {
            curl(proxy, "-w", "%{time_starttransfer}", "$url/stream/100")[0].toDouble() * 1000
        }.sorted()
    val args = ArrayList<String>()
    args += listOf("-Z", "--parallel-max", "$parallel", "-w", "%{time_total}\\n", "-H", "Connection: close")
    for (i in 0 until parallel) args += listOf("-o", "/dev/null", "$url/stream/$each")
    val started = System.nanoTime()
    val r = ServerE2ETest.run("curl", "-sS", "--fail", *proxy.toTypedArray(), *args.toTypedArray())
    check(r.first == 0) { "parallel curl failed: ${r.second}" }
    val wall = (System.nanoTime() - started) / 1e9
    return Figures(
        down = gbit(down, downSecs),
        up = gbit(upload.length(), upSecs),
        ttfbP50 = ttfb[ttfb.size / 2],
        ttfbP99 = ttfb[minOf(ttfb.size - 1, (ttfb.size * 99) / 100)],
        parallel = gbit(each * parallel, wall),
    )
}
