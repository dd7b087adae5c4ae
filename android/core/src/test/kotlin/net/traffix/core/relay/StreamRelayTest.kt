package net.traffix.core.relay

import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors
import java.util.concurrent.Future
import java.util.concurrent.TimeUnit
import net.traffix.core.mux.FrameSink
import net.traffix.core.mux.Mux
import net.traffix.core.mux.MuxConfig
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.ResetReason
import net.traffix.core.testing.FakeClock
import net.traffix.core.util.Bytes
import org.junit.After
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** The node's relay between a real loopback socket and a stream of a recording multiplexer. */
class StreamRelayTest {
    private val clock = FakeClock()
    private val sent = CopyOnWriteArrayList<Frame>()
    private val mux = Mux(MuxConfig(), FrameSink { sent.add(it) }, clock)
    private val pool = Executors.newCachedThreadPool()
    private val listener = ServerSocket(0, 5, InetAddress.getLoopbackAddress())

    @After
    fun tearDown() {
        pool.shutdownNow()
        listener.close()
    }

    /** Connects a node-side socket to the test's "target" and relays it on stream 3. */
    private fun relay(idleMillis: Long = 60_000): Triple<Socket, Future<RelayStats>, Long> {
        val nodeSide = Socket(listener.inetAddress, listener.localPort)
        val target = listener.accept()
        val s = mux.accept(3, 1 shl 20, 8)!!
        val run = pool.submit<RelayStats> { StreamRelay(nodeSide, s, pool, idleMillis, clock).run() }
        return Triple(target, run, 3L)
    }

    private fun dataFrom(id: Long): ByteArray =
        sent.filterIsInstance<Frame.Data>().filter { it.stream == id }.fold(ByteArray(0)) { acc, f -> acc + f.payload.toByteArray() }

    private fun waitUntil(cond: () -> Boolean) {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10)
        while (!cond()) {
            check(System.nanoTime() < deadline) { "condition not met; sent: $sent" }
            Thread.sleep(2)
        }
    }

    @Test
    fun bothDirectionsWithHalfCloseEndCleanly() {
        val (target, run, id) = relay()
        // Server → target, then the server's FIN: the target reads EOF.
        mux.dispatch(Frame.Data(id, false, Bytes.of("request".toByteArray())))
        mux.dispatch(Frame.Data(id, true, Bytes.EMPTY))
        val got = target.getInputStream().readBytes()
        assertArrayEquals("request".toByteArray(), got)
        // Target → server, then the target's EOF: DATA and a FIN reach the server.
        val reply = ByteArray(200_000) { (it % 251).toByte() }
        target.getOutputStream().write(reply)
        target.shutdownOutput()
        val stats = run.get(10, TimeUnit.SECONDS)
        assertEquals(RelayEnd.CLOSED, stats.end)
        assertEquals(reply.size.toLong(), stats.sent)
        assertEquals(7L, stats.received)
        assertArrayEquals(reply, dataFrom(id))
        assertTrue(sent.filterIsInstance<Frame.Data>().last().fin)
        assertTrue("a clean end sends no RESET", sent.none { it is Frame.Reset })
        assertEquals(0, mux.activeStreams)
        target.close()
    }

    @Test
    fun aServerResetClosesTheTargetSocket() {
        val (target, run, id) = relay()
        mux.dispatch(Frame.Reset(id, ResetReason.BILLING, "balance ran out"))
        assertEquals(RelayEnd.PEER_RESET, run.get(10, TimeUnit.SECONDS).end)
        assertEquals("the target sees the connection end", -1, target.getInputStream().read())
        target.close()
    }

    @Test
    fun aTargetThatFailsResetsTheStream() {
        val (target, run, id) = relay()
        target.setSoLinger(true, 0)
        target.close() // RST
        assertEquals(RelayEnd.SOCKET_ERROR, run.get(10, TimeUnit.SECONDS).end)
        assertTrue("the server hears a RESET, not a clean FIN", sent.any { it is Frame.Reset && it.stream == id })
    }

    @Test
    fun anIdleStreamIsResetOnceNothingMovedForTheIdleTimeout() {
        // Socket reads wake every 50 ms of real time; idleness is judged on the fake clock.
        val (target, run, id) = relay(idleMillis = 50)
        Thread.sleep(120)
        assertTrue("not idle before the clock says so", !run.isDone)
        clock.advanceMillis(60_000)
        assertEquals(RelayEnd.IDLE, run.get(10, TimeUnit.SECONDS).end)
        waitUntil { sent.any { it is Frame.Reset } }
        val reset = sent.filterIsInstance<Frame.Reset>().first()
        assertEquals(id, reset.stream)
        assertEquals(ResetReason.IDLE_TIMEOUT, reset.reason)
        target.close()
    }
}
