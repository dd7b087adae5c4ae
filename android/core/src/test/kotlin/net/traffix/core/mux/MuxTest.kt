package net.traffix.core.mux

import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicReference
import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.OpenErrReason
import net.traffix.core.protocol.ResetReason
import net.traffix.core.protocol.Target
import net.traffix.core.testing.FakeClock
import net.traffix.core.util.Bytes
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

/** The node side of the multiplexer against a recording sink; time comes from a fake clock. */
class MuxTest {
    private val sent = LinkedBlockingQueue<Frame>()
    private val clock = FakeClock()
    private val small = MuxConfig(initialWindow = 1000, maxWindow = 4000, ownInflight = 1_000_000, peerInflight = 1_000_000, maxData = 300)

    private fun mux(cfg: MuxConfig = small) = Mux(cfg, FrameSink { sent.add(it) }, clock)

    private fun drain(): List<Frame> = ArrayList<Frame>().also { sent.drainTo(it) }

    private fun data(stream: Long, n: Int, fin: Boolean = false) = Frame.Data(stream, fin, Bytes.of(ByteArray(n) { it.toByte() }))

    @Test
    fun acceptHonoursTheStreamLimitAndReleaseFreesASlot() {
        val m = mux()
        val a = m.accept(1, 100, maxStreams = 2)!!
        m.accept(2, 100, maxStreams = 2)!!
        assertNull(m.accept(3, 100, maxStreams = 2))
        assertEquals(2, m.activeStreams)
        a.release()
        assertEquals(1, m.activeStreams)
        assertEquals(listOf<Frame>(Frame.Reset(1, ResetReason.CANCEL, "stream abandoned")), drain())
        assertTrue(m.accept(3, 100, maxStreams = 2) != null)
    }

    @Test
    fun openOkAdvertisesOurWindowAndRejectSendsOpenErr() {
        val m = mux()
        val s = m.accept(5, 100, 10)!!
        val peer = SocketAddr(IpAddr.v4(93, 184, 215, 14), 443)
        s.sendOpenOk(peer)
        val r = m.accept(6, 100, 10)!!
        r.reject(OpenErrReason.DNS_FAILED, "example.invalid has no address")
        r.release()
        assertEquals(
            listOf(Frame.OpenOk(5, 1000, peer), Frame.OpenErr(6, OpenErrReason.DNS_FAILED, "example.invalid has no address")),
            drain(),
        )
        assertEquals(1, m.activeStreams)
    }

    @Test
    fun dataIsDeliveredInOrderAndCreditReturnedAtHalfTheWindow() {
        val m = mux()
        val s = m.accept(1, 100, 10)!!
        assertEquals(Dispatched.Handled, m.dispatch(data(1, 300)))
        assertEquals(Dispatched.Handled, m.dispatch(data(1, 200, fin = true)))
        assertEquals(Inbound.Data(data(1, 300).payload), s.receive(0))
        assertEquals(Inbound.Data(data(1, 200).payload), s.receive(0))
        assertEquals(Inbound.Fin, s.receive(0))
        assertNull(s.receive(0))
        s.consumed(300)
        assertEquals("below half the window: no WINDOW yet", emptyList<Frame>(), drain())
        clock.advanceMillis(100) // slow consumer: no auto-tuning
        s.consumed(200)
        assertEquals(listOf<Frame>(Frame.Window(1, 500)), drain())
        assertEquals(1000L, s.receiveWindow)
    }

    @Test
    fun sendingBeyondTheWindowIsAFlowControlReset() {
        val m = mux()
        val s = m.accept(1, 100, 10)!!
        m.dispatch(data(1, 300))
        m.dispatch(data(1, 300))
        m.dispatch(data(1, 300))
        m.dispatch(data(1, 101)) // 1,001 bytes into a 1,000-byte window
        assertEquals(listOf<Frame>(Frame.Reset(1, ResetReason.FLOW_CONTROL, "peer sent beyond the stream window")), drain())
        // A reset abandons the stream: what the target had not taken is dropped, not delivered.
        assertEquals(Inbound.Reset(ResetReason.FLOW_CONTROL, "peer sent beyond the stream window"), s.receive(0))
        assertEquals(0, m.activeStreams)
        // Late frames for the dead id are ignored.
        assertEquals(Dispatched.Handled, m.dispatch(data(1, 10)))
        assertEquals(Dispatched.Handled, m.dispatch(Frame.Window(1, 10)))
        s.release()
        assertEquals(emptyList<Frame>(), drain())
    }

    @Test
    fun returnedCreditExtendsTheWindow() {
        val m = mux()
        val s = m.accept(1, 100, 10)!!
        repeat(3) { m.dispatch(data(1, 300)) }
        repeat(3) { s.receive(0) }
        clock.advanceMillis(100)
        s.consumed(900)
        assertEquals(listOf<Frame>(Frame.Window(1, 900)), drain())
        repeat(3) { m.dispatch(data(1, 300)) } // 1,800 of the 1,900 granted
        assertEquals(emptyList<Frame>(), drain())
        m.dispatch(data(1, 101)) // 1,901
        assertEquals(Frame.Reset(1, ResetReason.FLOW_CONTROL, "peer sent beyond the stream window"), drain().single())
    }

    @Test
    fun connectionCreditIsReturnedAsTargetsTakeTheBytesInEighthsOfOurInflight() {
        val m = mux(small.copy(ownInflight = 4000))
        val s = m.accept(1, 100, 10)!!
        m.dispatch(data(1, 300))
        m.dispatch(data(1, 300))
        m.dispatch(data(9, 300)) // an unknown stream: dropped, its 300 bytes are free again
        assertEquals(emptyList<Frame>(), drain())
        m.dispatch(data(1, 200))
        assertEquals("arrival alone returns nothing", emptyList<Frame>(), drain())
        assertEquals(800L, m.bufferedBytes)
        s.receive(0)
        s.consumed(300) // 300 dropped + 300 taken ≥ 4,000 / 8
        assertEquals(listOf<Frame>(Frame.Window(0, 600)), drain())
        assertEquals(500L, m.bufferedBytes)
        s.release()
    }

    @Test
    fun fastConsumersGrowTheWindowUpToTheMaximum() {
        val m = mux()
        m.observeRtt(TimeUnit.MILLISECONDS.toNanos(50))
        val s = m.accept(1, 100, 10)!!
        clock.advanceMillis(10) // well within two round trips of the stream's start
        s.consumed(500)
        assertEquals(listOf<Frame>(Frame.Window(1, 1500)), drain()) // 500 consumed + 1,000 growth
        assertEquals(2000L, s.receiveWindow)
        clock.advanceMillis(10)
        s.consumed(1000)
        assertEquals(listOf<Frame>(Frame.Window(1, 3000)), drain())
        assertEquals(4000L, s.receiveWindow)
        clock.advanceMillis(10)
        s.consumed(2000)
        assertEquals("capped at maxWindow", listOf<Frame>(Frame.Window(1, 2000)), drain())
        assertEquals(4000L, s.receiveWindow)
        // The peer may now have 1,000 + 1,500 + 3,000 + 2,000 bytes outstanding in total.
        repeat(25) { m.dispatch(data(1, 300)) } // 7,500 bytes
        assertTrue(drain().none { it is Frame.Reset })
    }

    @Test
    fun writeSplitsIntoFramesWithinStreamCredit() {
        val m = mux()
        val s = m.accept(1, 700, 10)!!
        val payload = ByteArray(700) { it.toByte() }
        assertEquals(SendResult.SENT, s.write(payload, 0, 700, fin = true))
        val frames = drain()
        assertEquals(listOf(300, 300, 100), frames.map { (it as Frame.Data).payload.size })
        assertEquals(listOf(false, false, true), frames.map { (it as Frame.Data).fin })
        assertEquals(0L, s.sendCredit)
        assertEquals("nothing after our FIN", SendResult.CLOSED, s.write(payload, 0, 1))
    }

    @Test
    fun writerWaitsForStreamCreditThenContinues() {
        val m = mux()
        val s = m.accept(1, 100, 10)!!
        val result = AtomicReference<SendResult>()
        val done = CountDownLatch(1)
        val writer = Thread {
            result.set(s.write(ByteArray(250), 0, 250, timeoutMillis = 10_000))
            done.countDown()
        }
        writer.start()
        val first = sent.poll(5, TimeUnit.SECONDS) as Frame.Data
        assertEquals(100, first.payload.size)
        assertEquals("blocked without credit", 1L, done.count)
        m.dispatch(Frame.Window(1, 1000))
        assertTrue(done.await(5, TimeUnit.SECONDS))
        assertEquals(SendResult.SENT, result.get())
        assertEquals(150, (drain().single() as Frame.Data).payload.size)
        assertEquals(850L, s.sendCredit)
    }

    @Test
    fun writerIsBoundedByTheConnectionWindow() {
        val m = mux(small.copy(peerInflight = 400))
        val a = m.accept(1, 10_000, 10)!!
        val b = m.accept(3, 10_000, 10)!!
        assertEquals(SendResult.SENT, a.write(ByteArray(400), 0, 400))
        assertEquals(SendResult.TIMED_OUT, b.write(ByteArray(10), 0, 10, timeoutMillis = 50))
        drain()
        m.dispatch(Frame.Window(0, 50))
        assertEquals(SendResult.SENT, b.write(ByteArray(10), 0, 10, timeoutMillis = 1000))
        assertEquals(10, (drain().single() as Frame.Data).payload.size)
    }

    @Test
    fun windowOverflowResetsTheStreamOrBreaksTheConnection() {
        val m = mux()
        m.accept(1, 100, 10)!!
        m.dispatch(Frame.Window(1, 0xffff_ffffL))
        assertEquals(emptyList<Frame>(), drain())
        repeat(300) { m.dispatch(Frame.Window(1, 0xffff_ffffL)) }
        assertEquals(Frame.Reset(1, ResetReason.FLOW_CONTROL, "window overflow"), drain().single())
        repeat(255) { assertEquals(Dispatched.Handled, m.dispatch(Frame.Window(0, 0xffff_ffffL))) }
        assertTrue(m.dispatch(Frame.Window(0, 0xffff_ffffL)) is Dispatched.Violation)
    }

    @Test
    fun cleanHalfClosesNeedNoReset() {
        val m = mux()
        val s = m.accept(1, 100, 10)!!
        m.dispatch(data(1, 10, fin = true))
        assertTrue(s.receive(0) is Inbound.Data)
        assertEquals(Inbound.Fin, s.receive(0))
        assertEquals(SendResult.SENT, s.write(ByteArray(5), 0, 5, fin = true))
        s.release()
        assertEquals(listOf<Frame>(Frame.Data(1, true, Bytes.of(ByteArray(5)))), drain())
        assertEquals(0, m.activeStreams)
        // An empty FIN needs no credit at all.
        val t = m.accept(3, 0, 10)!!
        assertEquals(SendResult.SENT, t.sendFin())
        assertEquals(SendResult.CLOSED, t.sendFin())
        assertEquals(listOf<Frame>(Frame.Data(3, true, Bytes.EMPTY)), drain())
    }

    @Test
    fun peerResetReachesTheStreamAndUnblocksItsWriter() {
        val m = mux()
        val s = m.accept(1, 0, 10)!!
        val result = AtomicReference<SendResult>()
        val writer = Thread { result.set(s.write(ByteArray(10), 0, 10, timeoutMillis = 10_000)) }
        writer.start()
        Thread.sleep(50)
        m.dispatch(Frame.Reset(1, ResetReason.BILLING, "balance exhausted"))
        writer.join(5000)
        assertEquals(SendResult.CLOSED, result.get())
        assertEquals(Inbound.Reset(ResetReason.BILLING, "balance exhausted"), s.receive(0))
        s.release()
        assertEquals("no RESET back for a stream the peer reset", emptyList<Frame>(), drain())
    }

    @Test
    fun ourResetTellsThePeerAndTheStream() {
        val m = mux()
        val s = m.accept(1, 100, 10)!!
        s.reset(ResetReason.IDLE_TIMEOUT, "idle for 60 s")
        assertEquals(Inbound.Reset(ResetReason.IDLE_TIMEOUT, "idle for 60 s"), s.receive(0))
        assertEquals(listOf<Frame>(Frame.Reset(1, ResetReason.IDLE_TIMEOUT, "idle for 60 s")), drain())
        assertEquals(SendResult.CLOSED, s.write(ByteArray(1), 0, 1))
    }

    @Test
    fun closeResetsEveryStreamAndRefusesNewOnes() {
        val m = mux(small.copy(peerInflight = 0))
        val a = m.accept(1, 100, 10)!!
        val b = m.accept(3, 100, 10)!!
        val result = AtomicReference<SendResult>()
        val writer = Thread { result.set(a.write(ByteArray(10), 0, 10, timeoutMillis = 10_000)) }
        writer.start()
        Thread.sleep(50)
        m.close("session ended")
        writer.join(5000)
        assertEquals(SendResult.CLOSED, result.get())
        assertEquals(Inbound.Reset(ResetReason.SHUTDOWN, "session ended"), b.receive(0))
        assertNull(m.accept(5, 100, 10))
        assertEquals(0, m.activeStreams)
        a.release()
        b.release()
        assertEquals("nothing is sent once closed", emptyList<Frame>(), drain())
    }

    @Test
    fun controlFramesAndOpenGoToTheAgent() {
        val m = mux()
        val open = Frame.Open(7, 1000, Target.Domain("example.com", 443))
        assertEquals(Dispatched.ForAgent(open), m.dispatch(open))
        val ack = Frame.HeartbeatAck(3, 1_767_225_615_000)
        assertEquals(Dispatched.ForAgent(ack), m.dispatch(ack))
        m.accept(7, 1000, 10)
        assertTrue("OPEN for a live id", m.dispatch(open) is Dispatched.Violation)
        assertTrue(m.dispatch(Frame.OpenOk(7, 1000, null)) is Dispatched.Violation)
        assertTrue(m.dispatch(Frame.OpenErr(7, OpenErrReason.INTERNAL, "")) is Dispatched.Violation)
    }

    @Test
    fun manyStreamsTransferConcurrentlyWithoutLosingBytes() {
        // One writer thread per stream, as the relay runs them, against a simulated server
        // that returns stream and connection credit for every DATA from its own thread.
        val cfg = MuxConfig(initialWindow = 4096, maxWindow = 65536, ownInflight = 65536, peerInflight = 8192, maxData = 1000)
        val toServer = LinkedBlockingQueue<Frame>()
        val m = Mux(cfg, FrameSink { toServer.add(it) }, FakeClock())
        val received = LongArray(9)
        val fins = BooleanArray(9)
        val server = Thread {
            while (true) {
                val f = toServer.poll(10, TimeUnit.SECONDS) ?: break
                if (f !is Frame.Data) continue
                received[f.stream.toInt()] += f.payload.size.toLong()
                if (f.fin) fins[f.stream.toInt()] = true
                if (f.payload.size > 0) {
                    m.dispatch(Frame.Window(f.stream, f.payload.size.toLong()))
                    m.dispatch(Frame.Window(0, f.payload.size.toLong()))
                }
                if (fins.count { it } == 8) break
            }
        }
        server.start()
        val streams = (1L..8L).map { m.accept(it, 4096, 100)!! }
        val total = 100_000
        val results = arrayOfNulls<SendResult>(9)
        val writers = streams.map { s ->
            Thread {
                val buf = ByteArray(total) { (it % 251).toByte() }
                results[s.id.toInt()] = s.write(buf, 0, total, fin = true, timeoutMillis = 10_000)
            }
        }
        writers.forEach { it.start() }
        writers.forEach { it.join(30_000) }
        server.join(30_000)
        for (id in 1..8) {
            assertEquals("stream $id", SendResult.SENT, results[id])
            assertEquals("stream $id", total.toLong(), received[id])
            assertTrue("stream $id FIN", fins[id])
        }
    }

    @Test
    fun anOwnedBufferBecomesItsFrameAndIsSplitOnlyWhenCreditIsShort() {
        val m = mux()
        val s = m.accept(1, 500, 10)!!
        val whole = ByteArray(300) { (it * 3).toByte() }
        assertEquals(SendResult.SENT, s.writeOwned(whole))
        assertEquals(listOf<Frame>(Frame.Data(1, false, Bytes.of(whole))), drain())
        // 200 bytes of credit left: the same call splits into copies, in order, the rest waiting for WINDOW.
        val big = ByteArray(300) { (it + 1).toByte() }
        val result = AtomicReference<SendResult>()
        val writer = Thread { result.set(s.writeOwned(big, fin = true)) }.apply { start() }
        val first = sentFrames(1)
        assertEquals(listOf(200), first.map { (it as Frame.Data).payload.size })
        m.dispatch(Frame.Window(1, 100))
        writer.join(10_000)
        assertEquals(SendResult.SENT, result.get())
        val rest = drain()
        assertEquals(listOf(100), rest.map { (it as Frame.Data).payload.size })
        assertTrue((rest.single() as Frame.Data).fin)
        assertEquals(Bytes.of(big), Bytes.of((first + rest).flatMap { (it as Frame.Data).payload.toByteArray().toList() }.toByteArray()))
    }

    /** Waits for [n] frames from a writer thread (a blocking take, not a sleep). */
    private fun sentFrames(n: Int): List<Frame> = List(n) { sent.poll(10, TimeUnit.SECONDS) ?: throw AssertionError("no frame") }
}
