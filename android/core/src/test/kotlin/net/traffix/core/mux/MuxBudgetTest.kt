package net.traffix.core.mux

import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicLong
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.ResetReason
import net.traffix.core.testing.FakeClock
import net.traffix.core.util.Bytes
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/**
 * The inbound buffer budget: connection credit comes back only when a target has taken the
 * bytes, so what the node holds for its targets never exceeds its HELLO max_inflight, whatever
 * the number of streams and however slow a target is — and nothing waits forever on it.
 */
class MuxBudgetTest {
    private val clock = FakeClock()

    /**
     * A server that keeps to the protocol: it sends DATA on a stream only within that stream's
     * credit and the connection's, and learns both from the node's WINDOW frames.
     */
    private class CompliantServer(val cfg: MuxConfig) {
        val fromNode = LinkedBlockingQueue<Frame>()
        var connCredit = cfg.ownInflight
        val streamCredit = HashMap<Long, Long>()

        fun absorb() {
            while (true) {
                when (val f = fromNode.poll() ?: return) {
                    is Frame.Window -> if (f.stream == 0L) connCredit += f.increment else streamCredit.merge(f.stream, f.increment, Long::plus)
                    else -> {}
                }
            }
        }

        /** The most this server may send on [stream] now, up to [want]. */
        fun mayd(stream: Long, want: Long): Long = minOf(want, connCredit, streamCredit.getValue(stream))

        fun spent(stream: Long, n: Long) {
            connCredit -= n
            streamCredit.merge(stream, -n, Long::plus)
        }
    }

    private fun payload(n: Int) = Bytes.of(ByteArray(n) { (it * 7).toByte() })

    @Test
    fun manyStreamsAndOneStalledTargetStayWithinTheBudgetAndTheOthersFinish() {
        val cfg = MuxConfig(initialWindow = 64 * 1024, maxWindow = 1024 * 1024, ownInflight = 1024 * 1024, peerInflight = 1024 * 1024, maxData = 16 * 1024)
        val server = CompliantServer(cfg)
        val m = Mux(cfg, FrameSink { server.fromNode.add(it) }, clock)
        m.observeRtt(TimeUnit.MILLISECONDS.toNanos(50))
        val streams = (1L..64L).map { id -> m.accept(id, 1 shl 20, 64)!!.also { server.streamCredit[id] = cfg.initialWindow } }
        val toSend = 512 * 1024L // per stream: 32 MiB in all through a 1 MiB budget
        val left = HashMap<Long, Long>().apply { streams.forEach { put(it.id, toSend) } }
        val stalled = streams[0] // its target takes nothing
        var peak = 0L
        var rounds = 0
        while (left.filterKeys { it != stalled.id }.values.any { it > 0 }) {
            rounds++
            assertTrue("no progress: the budget deadlocked", rounds < 100_000)
            for (s in streams) {
                server.absorb()
                val n = server.mayd(s.id, minOf(left.getValue(s.id), cfg.maxData.toLong()))
                if (n > 0) {
                    assertEquals(Dispatched.Handled, m.dispatch(Frame.Data(s.id, false, payload(n.toInt()))))
                    server.spent(s.id, n)
                    left.merge(s.id, -n, Long::plus)
                }
                peak = maxOf(peak, m.bufferedBytes)
                if (s !== stalled) {
                    // The target takes everything queued.
                    while (true) {
                        val ev = s.receive(0) as? Inbound.Data ?: break
                        clock.advanceMillis(1)
                        s.consumed(ev.payload.size)
                    }
                }
            }
        }
        assertTrue("peak $peak over the budget", peak <= cfg.ownInflight)
        assertTrue("the stalled stream holds at most a quarter of the budget: ${m.bufferedBytes}", m.bufferedBytes <= cfg.ownInflight / 4)
        assertEquals(0L, streams.drop(1).sumOf { left.getValue(it.id) })
        // The stalled stream is reset: its queued bytes return and the server may send again.
        m.resetStream(stalled.id, ResetReason.IDLE_TIMEOUT, "idle timeout")
        server.absorb()
        assertEquals(0L, m.bufferedBytes)
        assertTrue(m.connectionCreditGranted >= cfg.ownInflight * 7 / 8)
        assertTrue("the server holds at least 7/8 of the budget again", server.connCredit >= cfg.ownInflight * 7 / 8)
    }

    @Test
    fun aServerBeyondTheConnectionWindowIsAViolation() {
        val cfg = MuxConfig(initialWindow = 1000, maxWindow = 1000, ownInflight = 2500, peerInflight = 2500, maxData = 1000)
        val m = Mux(cfg, FrameSink { }, clock)
        val streams = (1L..3L).map { m.accept(it, 100, 10)!! }
        assertEquals(Dispatched.Handled, m.dispatch(Frame.Data(1, false, payload(1000))))
        assertEquals(Dispatched.Handled, m.dispatch(Frame.Data(2, false, payload(1000))))
        assertEquals(Dispatched.Handled, m.dispatch(Frame.Data(3, false, payload(500))))
        val d = m.dispatch(Frame.Data(3, false, payload(1)))
        assertTrue(d is Dispatched.Violation)
        streams.forEach { it.release() }
    }

    @Test
    fun bytesOfAStreamThatEndsUnreadGoBackToTheBudget() {
        val sent = LinkedBlockingQueue<Frame>()
        val cfg = MuxConfig(initialWindow = 1000, maxWindow = 1000, ownInflight = 8000, peerInflight = 8000, maxData = 1000)
        val m = Mux(cfg, FrameSink { sent.add(it) }, clock)
        val s = m.accept(1, 100, 10)!!
        m.dispatch(Frame.Data(1, false, payload(1000)))
        assertEquals(1000L, m.bufferedBytes)
        s.release() // the relay gave up with a frame still queued
        assertEquals(0L, m.bufferedBytes)
        assertEquals(listOf<Frame>(Frame.Reset(1, ResetReason.CANCEL, "stream abandoned"), Frame.Window(0, 1000)), ArrayList<Frame>().also { sent.drainTo(it) })
        // A late DATA for it is dropped and its credit returned too; a late consumed() returns nothing twice.
        s.consumed(1000)
        repeat(8) { m.dispatch(Frame.Data(1, false, payload(1000))) }
        assertEquals(8000L, m.connectionCreditGranted)
    }

    @Test
    fun windowsDoNotGrowWhileTheBudgetIsHalfUsed() {
        val cfg = MuxConfig(initialWindow = 1000, maxWindow = 100_000, ownInflight = 8000, peerInflight = 8000, maxData = 1000)
        val m = Mux(cfg, FrameSink { }, clock)
        m.observeRtt(TimeUnit.MILLISECONDS.toNanos(50))
        val slow = (1L..4L).map { m.accept(it, 100, 10)!! }
        slow.forEach { m.dispatch(Frame.Data(it.id, false, payload(1000))) } // 4,000 queued: half the budget
        val fast = m.accept(9, 100, 10)!!
        m.dispatch(Frame.Data(9, false, payload(600)))
        fast.receive(0)
        fast.consumed(600) // fast, but the budget is half used
        assertEquals(1000L, fast.receiveWindow)
        slow.forEach { s -> s.receive(0); s.consumed(1000) }
        m.dispatch(Frame.Data(9, false, payload(1000)))
        fast.receive(0)
        fast.consumed(1000)
        assertEquals("the budget is free again: the window grows, to a quarter of it at most", 2000L, fast.receiveWindow)
        assertEquals(2000L, m.windowCeiling)
    }

    @Test
    fun realThreadsAcrossManyStreamsNeitherDeadlockNorExceedTheBudget() {
        // A server thread sending within credit, 32 reader threads taking bytes as a target would.
        val cfg = MuxConfig(initialWindow = 16 * 1024, maxWindow = 256 * 1024, ownInflight = 512 * 1024, peerInflight = 512 * 1024, maxData = 8 * 1024)
        val server = CompliantServer(cfg)
        val m = Mux(cfg, FrameSink { server.fromNode.add(it) }, clock)
        val perStream = 256 * 1024L
        val streams = (1L..32L).map { id -> m.accept(id, 1 shl 20, 64)!!.also { server.streamCredit[id] = cfg.initialWindow } }
        val got = AtomicLong(0)
        val done = CountDownLatch(streams.size)
        val peak = AtomicLong(0)
        val readers = streams.map { s ->
            Thread {
                var n = 0L
                while (n < perStream) {
                    val ev = s.receive(10_000) as? Inbound.Data ?: break
                    n += ev.payload.size
                    s.consumed(ev.payload.size)
                }
                got.addAndGet(n)
                done.countDown()
            }.apply { isDaemon = true; start() }
        }
        val left = HashMap<Long, Long>().apply { streams.forEach { put(it.id, perStream) } }
        val serverThread = Thread {
            while (left.values.any { it > 0 }) {
                var progressed = false
                for (s in streams) {
                    server.absorb()
                    val n = server.mayd(s.id, minOf(left.getValue(s.id), cfg.maxData.toLong()))
                    if (n > 0) {
                        m.dispatch(Frame.Data(s.id, false, payload(n.toInt())))
                        server.spent(s.id, n)
                        left.merge(s.id, -n, Long::plus)
                        progressed = true
                    }
                    peak.accumulateAndGet(m.bufferedBytes, ::maxOf)
                }
                if (!progressed) {
                    // Wait for a WINDOW from a reader instead of spinning.
                    server.fromNode.poll(10, TimeUnit.SECONDS)?.let { server.fromNode.add(it) } ?: break
                }
            }
        }.apply { isDaemon = true; start() }
        assertTrue("readers finished", done.await(60, TimeUnit.SECONDS))
        serverThread.join(10_000)
        readers.forEach { it.join(1_000) }
        assertEquals(perStream * streams.size, got.get())
        assertTrue("peak ${peak.get()} within the budget", peak.get() <= cfg.ownInflight)
    }
}
