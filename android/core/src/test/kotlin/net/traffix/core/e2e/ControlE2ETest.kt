package net.traffix.core.e2e

import java.io.File
import java.util.concurrent.ArrayBlockingQueue
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import net.traffix.core.agent.Agent
import net.traffix.core.agent.AgentConfig
import net.traffix.core.agent.AgentListener
import net.traffix.core.agent.DeviceSample
import net.traffix.core.agent.Phase
import net.traffix.core.agent.StatsResult
import net.traffix.core.agent.UnpairResult
import net.traffix.core.e2e.ServerE2ETest.Companion.run
import net.traffix.core.e2e.ServerE2ETest.Companion.waitFor
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.protocol.NetworkType
import net.traffix.core.testing.SoftwareSigner
import net.traffix.core.transport.SocketTransport
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Before
import org.junit.Test

/** The Kotlin node's control requests (history, unpair) against the real `traffix serve`. */
class ControlE2ETest {
    private lateinit var server: TraffixServer
    private lateinit var origin: Origin
    private var agent: Agent? = null

    @Before
    fun setUp() {
        val bin = System.getProperty("traffix.bin")
        assumeTrue("traffix.bin not set: no Rust build to test against", bin != null)
        origin = Origin()
        // Heartbeats (and the server's tally in their ACKs) every second, busy or idle.
        server =
            TraffixServer(
                File(bin),
                mapOf("TRAFFIX_LIMITS__HEARTBEAT_INTERVAL_SECS" to "1", "TRAFFIX_LIMITS__HEARTBEAT_IDLE_INTERVAL_SECS" to "1"),
            )
    }

    @After
    fun tearDown() {
        agent?.close()
        if (::server.isInitialized) server.close()
        if (::origin.isInitialized) origin.close()
    }

    @Test
    fun theHistoryShowsTodaysTrafficAndUnpairingRemovesTheDevice() {
        val password = server.addUser("alice", credit = "10")
        server.addUser("bob", credit = "0")
        val unpaired = AtomicInteger()
        val link = (PairLink.parse(server.pairLink("bob")) as PairLink.Result.Ok).link
        val a =
            Agent(
                AgentConfig(link, paired = false, allowPrivateTargets = true, agentName = "traffix-core-e2e"),
                SoftwareSigner.newP256(),
                SocketTransport(),
                object : AgentListener {
                    override fun onUnpaired() {
                        unpaired.incrementAndGet()
                    }
                },
                ResourceSettings(wifiOnly = false, batteryFloorPct = null),
                DeviceSample(NetworkType.ETHERNET, batteryPct = null, charging = false),
            )
        agent = a
        a.start()
        waitFor("the Kotlin node online") { a.status.phase == Phase.SERVING && server.onlineDevices() == 1 }
        val r = run("curl", "-sS", "--fail", "-x", "socks5h://alice:$password@${server.socks}", "-o", "/dev/null",
            "http://${origin.addr}/bytes/${1 shl 20}/1")
        assertEquals(r.second, 0, r.first)
        waitFor("the stream metered", detail = { "${a.status.server}" }) { (a.status.server?.earnedToday ?: 0) > 0 }

        val answers = ArrayBlockingQueue<StatsResult>(1)
        a.requestHistory(3, 2) { answers.add(it) }
        val h = (answers.poll(30, TimeUnit.SECONDS) as StatsResult.Ok).history
        assertEquals("USD", h.currency)
        assertEquals(3 to 2, h.days.size to h.months.size)
        assertTrue("${h.days}", h.days.last().bytes >= 1 shl 20 && h.days.last().earnedMicros > 0)
        assertTrue(h.months.last().bytes >= h.days.last().bytes)

        val done = ArrayBlockingQueue<UnpairResult>(1)
        a.unpair("e2e test") { done.add(it) }
        assertEquals(UnpairResult.Unpaired, done.poll(30, TimeUnit.SECONDS))
        // The listener hears it on the agent's thread right after the callback.
        waitFor("the app told to forget the key") { unpaired.get() == 1 }
        waitFor("the server forgot the device") { server.deviceCount() == 0 }
        assertEquals(Phase.STOPPED, a.status.phase)
    }

    /**
     * Paused by the owner, the tunnel is closed: history and unpair still work, each over one
     * control-only session (HELLO tag 16), which the server neither lists online nor lets
     * replace the device's state — it stays paused until the unpair removes it.
     */
    @Test
    fun whilePausedHistoryAndUnpairGoOverControlOnlySessions() {
        server.addUser("carol", credit = "0")
        val unpaired = AtomicInteger()
        val link = (PairLink.parse(server.pairLink("carol")) as PairLink.Result.Ok).link
        val a =
            Agent(
                AgentConfig(link, paired = false, allowPrivateTargets = true, agentName = "traffix-core-e2e"),
                SoftwareSigner.newP256(),
                SocketTransport(),
                object : AgentListener {
                    override fun onUnpaired() {
                        unpaired.incrementAndGet()
                    }
                },
                ResourceSettings(wifiOnly = false, batteryFloorPct = null),
                DeviceSample(NetworkType.ETHERNET, batteryPct = null, charging = false),
            )
        agent = a
        a.start()
        waitFor("the Kotlin node online") { a.status.phase == Phase.SERVING && server.onlineDevices() == 1 }

        a.updateSettings(ResourceSettings(wifiOnly = false, batteryFloorPct = null, paused = true))
        waitFor("paused by the owner with the tunnel closed", detail = { "${a.status} ${server.devices()}" }) {
            a.status.phase == Phase.PAUSED && server.onlineDevices() == 0 && server.pausedDevices("by_owner") >= 1
        }

        val answers = ArrayBlockingQueue<StatsResult>(1)
        a.requestHistory(2, 1) { answers.add(it) }
        val h = (answers.poll(30, TimeUnit.SECONDS) as StatsResult.Ok).history
        assertEquals("USD", h.currency)
        assertEquals(2 to 1, h.days.size to h.months.size)
        assertEquals("still paused: the session served nothing", Phase.PAUSED, a.status.phase)
        assertEquals("a control-only session is never online", 0, server.onlineDevices())
        assertTrue(server.devices(), server.pausedDevices("by_owner") >= 1)

        val done = ArrayBlockingQueue<UnpairResult>(1)
        a.unpair("e2e test while paused") { done.add(it) }
        assertEquals(UnpairResult.Unpaired, done.poll(30, TimeUnit.SECONDS))
        waitFor("the app told to forget the key") { unpaired.get() == 1 }
        waitFor("the server forgot the device", detail = { server.devices() }) { server.deviceCount() == 0 }
        assertEquals(Phase.STOPPED, a.status.phase)
    }
}
