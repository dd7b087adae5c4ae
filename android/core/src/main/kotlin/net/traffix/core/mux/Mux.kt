package net.traffix.core.mux

import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.atomic.AtomicLong
import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock
import net.traffix.core.net.SocketAddr
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.MAX_DATA_LEN
import net.traffix.core.protocol.OpenErrReason
import net.traffix.core.protocol.ResetReason
import net.traffix.core.time.Clock
import net.traffix.core.util.Bytes

/*
 * The node side of the stream multiplexer: stream table, credit windows, connection window, and
 * the dispatch of stream frames (docs/protocol.md "Streams and flow control"). It mirrors the
 * reference, src/tunnel/mux.rs, for what a node does: the server opens streams, the node
 * accepts them, and both send DATA within the peer's credit.
 *
 * It owns no socket. The transport feeds every decoded frame to [Mux.dispatch] from its single
 * reader thread, and the mux hands encoded-to-be frames to a [FrameSink] from any thread. Each
 * stream is driven by two plain threads (socket → tunnel with [MuxStream.write], tunnel →
 * socket with [MuxStream.receive]); blocking waits end when credit arrives, the stream or the
 * connection closes, or their timeout passes. Locks are held for a map lookup or a counter
 * update only, never while waiting on another lock or on I/O.
 *
 * Memory: inbound DATA waits in its stream's queue until the relay has written it to the
 * target's socket. Connection credit (WINDOW on stream 0) is returned only then — not when the
 * frame arrives — so [MuxConfig.ownInflight] is a budget for everything queued across all
 * streams: a server that keeps to the protocol can never make the node hold more, however many
 * streams there are and however slow their targets; one that sends beyond it is a connection
 * violation. A stream's window only grows while the budget is less than half used, and never
 * past a quarter of it, so one stalled target cannot take the whole budget; the bytes a dead
 * stream still had queued go back to the budget at once.
 */

/** Upper bound on credit a peer may grant, so hostile WINDOW floods cannot overflow counters. */
const val MAX_CREDIT: Long = 1L shl 40

/** Flow-control numbers for one tunnel (the server's `[limits]` have the same defaults). */
data class MuxConfig(
    /** Receive window we advertise for each new stream (in OPEN_OK). */
    val initialWindow: Long = 256 * 1024,
    /** Largest receive window auto-tuning may grow to (also never past a quarter of [ownInflight]). */
    val maxWindow: Long = 1024 * 1024,
    /**
     * Bytes we accept in flight on the whole connection (our HELLO max_inflight): the inbound
     * buffer budget, since credit comes back only as targets take the bytes.
     */
    val ownInflight: Long = 4 * 1024 * 1024,
    /** Bytes the peer accepts in flight on the whole connection (WELCOME max_inflight). */
    val peerInflight: Long = 16 * 1024 * 1024,
    /** Largest DATA payload per frame. */
    val maxData: Int = MAX_DATA_LEN,
) {
    init {
        require(initialWindow in 1..0xffff_ffffL) { "initial window $initialWindow" }
        require(maxWindow >= initialWindow && maxWindow <= 0xffff_ffffL) { "max window $maxWindow" }
        require(ownInflight in 0..0xffff_ffffL && peerInflight in 0..0xffff_ffffL) { "inflight out of u32 range" }
        require(maxData in 1..MAX_DATA_LEN) { "max data $maxData" }
    }
}

/** Where the mux sends frames; must be safe to call from any thread and must not block for long. */
fun interface FrameSink {
    fun send(frame: Frame)
}

/** What reaches a stream from the peer, in order. */
sealed class Inbound {
    data class Data(val payload: Bytes) : Inbound()

    /** The peer's direction ended: shut down the write half of the socket. */
    object Fin : Inbound()

    /** The stream is gone: by the peer's RESET, our own, a flow-control violation or the connection closing. */
    data class Reset(val reason: ResetReason, val message: String) : Inbound()
}

/** The outcome of [Mux.dispatch]. */
sealed class Dispatched {
    /** A stream frame the mux handled. */
    object Handled : Dispatched()

    /** A control frame or an OPEN: the agent handles it (OPEN needs the egress policy and a dial). */
    data class ForAgent(val frame: Frame) : Dispatched()

    /** The peer broke the protocol for the whole connection: answer ERROR 5 and close. */
    data class Violation(val message: String) : Dispatched()
}

/** The outcome of [MuxStream.write]. */
enum class SendResult {
    SENT,

    /** The stream was reset, our FIN was already sent, or the connection closed. */
    CLOSED,

    /** No credit arrived within the timeout. */
    TIMED_OUT,
}

/** Credit that one side may spend: a counter threads can wait on. */
internal class Credit(initial: Long) {
    private val lock = ReentrantLock()
    private val changed = lock.newCondition()
    private var avail = initial
    private var closed = false

    /** Adds [n]; returns the new total. */
    fun add(n: Long): Long = lock.withLock {
        avail += n
        changed.signalAll()
        avail
    }

    fun available(): Long = lock.withLock { avail }

    fun close() = lock.withLock {
        closed = true
        changed.signalAll()
    }

    /**
     * Waits until credit is available, then takes up to [max]. Returns the amount taken, -1 when
     * closed, 0 when [timeoutNanos] passed first.
     */
    fun take(max: Long, timeoutNanos: Long): Long = lock.withLock {
        var left = timeoutNanos
        while (!closed && avail <= 0) {
            if (left <= 0) return 0
            left = changed.awaitNanos(left)
        }
        if (closed) return -1
        val n = minOf(max, avail)
        avail -= n
        n
    }

    /** Waits until credit is available without taking it; same results as [take]. */
    fun await(timeoutNanos: Long): Long = lock.withLock {
        var left = timeoutNanos
        while (!closed && avail <= 0) {
            if (left <= 0) return 0
            left = changed.awaitNanos(left)
        }
        if (closed) -1 else avail
    }

    /** Spends [n] already known to be available (the single writer of a stream). */
    fun spend(n: Long) = lock.withLock { avail -= n }
}

/** One tunnel's multiplexer (node side). */
class Mux(val config: MuxConfig, private val sink: FrameSink, private val clock: Clock = Clock.SYSTEM) {
    private val lock = ReentrantLock()
    private val streams = HashMap<Long, MuxStream>()
    private var closed = false
    internal val connCredit = Credit(config.peerInflight)
    /** Consumed (or dropped) bytes whose connection credit has not gone back yet. */
    private val connUnreturned = AtomicLong(0)

    /** DATA bytes received and not yet returned as connection credit: at most [MuxConfig.ownInflight]. */
    private val connOutstanding = AtomicLong(0)

    /** DATA bytes queued in streams that no target has taken yet. */
    private val queued = AtomicLong(0)
    private val rttNanos = AtomicLong(0)

    /** Bytes waiting in stream queues for their targets (the inbound buffer in use). */
    val bufferedBytes: Long get() = queued.get()

    /** Connection credit the server still holds from us, i.e. the most it may send right now. */
    val connectionCreditGranted: Long get() = config.ownInflight - connOutstanding.get()

    /** Largest window a stream may grow to: [MuxConfig.maxWindow], at most a quarter of the budget. */
    internal val windowCeiling: Long = maxOf(config.initialWindow, minOf(config.maxWindow, config.ownInflight / 4))

    /** Whether a stream may grow its window by [grow] now: the budget stays under half used. */
    internal fun mayGrow(grow: Long): Boolean = queued.get() + grow <= config.ownInflight / 2

    /** Streams currently in the table (accepted and neither reset nor released). */
    val activeStreams: Int get() = lock.withLock { streams.size }

    val isClosed: Boolean get() = lock.withLock { closed }

    /** The smoothed round-trip time in nanoseconds, or 0 before the first sample. */
    val rttNanosSmoothed: Long get() = rttNanos.get()

    /** Records a round-trip sample (heartbeat ACK or ping) for window auto-tuning. */
    fun observeRtt(nanos: Long) {
        val sample = nanos.coerceIn(1, Int.MAX_VALUE.toLong() * 1000)
        val old = rttNanos.get()
        rttNanos.set(if (old == 0L) sample else (old * 7 + sample) / 8)
    }

    internal fun send(frame: Frame) {
        if (!isClosed) sink.send(frame)
    }

    internal fun nanoTime(): Long = clock.nanoTime()

    /**
     * Registers a stream the server opened with [window] bytes of send credit. Returns null when
     * the node is at [maxStreams] or closed (the caller answers OPEN_ERR node_busy).
     */
    fun accept(id: Long, window: Long, maxStreams: Int): MuxStream? = lock.withLock {
        if (closed || streams.size >= maxStreams) return null
        val s = MuxStream(id, this, window)
        streams[id] = s
        s
    }

    internal fun remove(id: Long): MuxStream? = lock.withLock { streams.remove(id) }

    private fun lookup(id: Long): MuxStream? = lock.withLock { streams[id] }

    /**
     * Feeds one frame read from the server. Stream frames are handled here; control frames and
     * OPEN come back for the agent. Never throws for what a peer sends.
     */
    fun dispatch(frame: Frame): Dispatched {
        when (frame) {
            is Frame.Data -> {
                val len = frame.payload.size.toLong()
                if (connOutstanding.addAndGet(len) > config.ownInflight) {
                    return Dispatched.Violation("peer sent beyond the connection window (${config.ownInflight} bytes)")
                }
                val s = lookup(frame.stream)
                if (s == null) {
                    dropped(len) // late frame for a dead id: nothing holds it
                    return Dispatched.Handled
                }
                if (!s.deliver(frame)) {
                    dropped(len)
                    resetStream(frame.stream, ResetReason.FLOW_CONTROL, "peer sent beyond the stream window")
                }
                return Dispatched.Handled
            }
            is Frame.Window -> {
                if (frame.stream == 0L) {
                    if (connCredit.available() + frame.increment > MAX_CREDIT) {
                        return Dispatched.Violation("connection window overflow")
                    }
                    connCredit.add(frame.increment)
                } else {
                    val s = lookup(frame.stream) ?: return Dispatched.Handled
                    if (s.credit.add(frame.increment) > MAX_CREDIT) {
                        resetStream(frame.stream, ResetReason.FLOW_CONTROL, "window overflow")
                    }
                }
                return Dispatched.Handled
            }
            is Frame.Reset -> {
                remove(frame.stream)?.gone(Inbound.Reset(frame.reason, frame.message))
                return Dispatched.Handled
            }
            is Frame.Open -> {
                if (lookup(frame.stream) != null) return Dispatched.Violation("OPEN for live stream ${frame.stream}")
                return Dispatched.ForAgent(frame)
            }
            is Frame.OpenOk, is Frame.OpenErr ->
                return Dispatched.Violation("${frame.name} from the server: only a node answers OPEN")
            else -> return Dispatched.ForAgent(frame)
        }
    }

    /** A stream queued [n] bytes for its target. */
    internal fun queuedMore(n: Long) {
        queued.addAndGet(n)
    }

    /** [n] queued bytes were taken by their target: their connection credit may go back. */
    internal fun taken(n: Long) {
        queued.addAndGet(-n)
        returnConnCredit(n)
    }

    /** [n] received bytes that no target will take (dead stream, violation): credit goes back. */
    internal fun dropped(n: Long) = returnConnCredit(n)

    /**
     * Returns connection credit in batches of an eighth of our window (one WINDOW per batch, not
     * per frame). Below that the peer still holds at least seven eighths, so nothing waits on it.
     */
    private fun returnConnCredit(len: Long) {
        if (len <= 0) return
        val pending = connUnreturned.addAndGet(len)
        if (pending >= maxOf(config.ownInflight / 8, 1)) {
            // Only the thread that takes the batch sends it; a racing thread sees 0 and skips.
            val batch = connUnreturned.getAndSet(0)
            if (batch <= 0) return
            connOutstanding.addAndGet(-batch)
            var left = batch
            while (left > 0) {
                val inc = minOf(left, 0xffff_ffffL)
                send(Frame.Window(0, inc))
                left -= inc
            }
        }
    }

    /** Resets one stream from our side: the peer gets RESET, the stream sees [Inbound.Reset]. */
    fun resetStream(id: Long, reason: ResetReason, message: String) {
        remove(id)?.gone(Inbound.Reset(reason, message))
        send(Frame.Reset(id, reason, message))
    }

    /** Resets every live stream (the owner's hard limit hit: no live stream may carry on). */
    fun resetAll(reason: ResetReason, message: String) {
        val all = lock.withLock { streams.keys.toList() }
        for (id in all) resetStream(id, reason, message)
    }

    /** Ends the connection: every stream sees a reset and blocked writers return [SendResult.CLOSED]. */
    fun close(reason: String) {
        val all = lock.withLock {
            closed = true
            val list = streams.values.toList()
            streams.clear()
            list
        }
        for (s in all) s.gone(Inbound.Reset(ResetReason.SHUTDOWN, reason))
        connCredit.close()
    }
}

/**
 * One stream the server opened. The agent dials, then calls [sendOpenOk] or [reject]; two
 * threads then move bytes ([write] / [receive] with [consumed]); at the end the owner calls
 * [release], which resets the stream towards the server unless it finished cleanly.
 */
class MuxStream internal constructor(val id: Long, private val mux: Mux, sendWindow: Long) {
    internal val credit = Credit(sendWindow)
    private val inbound = LinkedBlockingQueue<Inbound>()

    /** Receive window we granted so far (grows with auto-tuning); written by the reader thread. */
    @Volatile private var window: Long = mux.config.initialWindow

    /** Total credit we granted (initial window plus every WINDOW), read by the dispatcher. */
    private val granted = AtomicLong(mux.config.initialWindow)

    /** Payload bytes received; dispatcher thread only. */
    private var received = 0L

    /** Queued bytes no target has taken yet, and whether the stream is gone; guarded by `this`. */
    private var held = 0L
    private var finished = false

    /** Bytes delivered to our socket and not yet returned as credit; reader thread only. */
    private var unreturned = 0L
    private var lastGrantNanos = mux.nanoTime()

    private val sentFin = AtomicBoolean(false)
    private val gotFin = AtomicBoolean(false)
    private val released = AtomicBoolean(false)

    /** The dispatcher's side of DATA: false when the peer overran its credit. */
    internal fun deliver(frame: Frame.Data): Boolean {
        received += frame.payload.size
        if (received > granted.get()) return false
        val n = frame.payload.size.toLong()
        if (n > 0) {
            val accepted = synchronized(this) { if (finished) false else { held += n; true } }
            if (!accepted) {
                mux.dropped(n) // released between the lookup and here
                return true
            }
            mux.queuedMore(n)
            inbound.add(Inbound.Data(frame.payload))
        }
        if (frame.fin) inbound.add(Inbound.Fin)
        return true
    }

    /**
     * The stream is gone: what its target never took goes back to the connection budget and is
     * dropped (a reset abandons the stream; a release is done with it).
     */
    private fun finish(dropQueued: Boolean) {
        val left = synchronized(this) {
            if (finished) return
            finished = true
            val h = held
            held = 0
            h
        }
        if (dropQueued) inbound.clear()
        if (left > 0) {
            mux.queuedMore(-left)
            mux.dropped(left)
        }
    }

    /** The mux forgot this stream: wake both threads with [event]. */
    internal fun gone(event: Inbound.Reset) {
        credit.close()
        // RESET abandons the stream at once (docs/protocol.md): what the target has not taken is
        // dropped, so a client cannot park bytes outside the budget by filling and resetting.
        finish(dropQueued = true)
        inbound.add(event)
    }

    /** Tells the server the dial succeeded, advertising our receive window. */
    fun sendOpenOk(peer: SocketAddr?) {
        mux.send(Frame.OpenOk(id, mux.config.initialWindow, peer))
    }

    /** Tells the server the dial failed and forgets the stream. */
    fun reject(reason: OpenErrReason, message: String) {
        released.set(true)
        mux.remove(id)
        credit.close()
        finish(dropQueued = true)
        mux.send(Frame.OpenErr(id, reason, message))
    }

    /**
     * The next event from the server, waiting up to [timeoutMillis]; null on timeout. After an
     * [Inbound.Reset] nothing more arrives.
     */
    fun receive(timeoutMillis: Long): Inbound? {
        val ev = inbound.poll(timeoutMillis, TimeUnit.MILLISECONDS)
        if (ev is Inbound.Fin) gotFin.set(true)
        return ev
    }

    /**
     * The target's socket took [n] bytes of what [receive] returned: their connection credit goes
     * back to the budget, and the stream's credit once half the window is consumed. The window
     * grows (doubling, up to [MuxConfig.maxWindow] and a quarter of the budget) when a
     * half-window drained in less than about two round trips (docs/protocol.md "Credit
     * windows") and the budget is less than half used.
     */
    fun consumed(n: Int) {
        require(n >= 0) { "negative byte count" }
        val taken = synchronized(this) {
            if (finished) {
                0L
            } else {
                val t = minOf(n.toLong(), held)
                held -= t
                t
            }
        }
        if (taken > 0) mux.taken(taken)
        unreturned += n
        val w = window
        if (unreturned < w / 2) return
        val now = mux.nanoTime()
        val rtt = maxOf(mux.rttNanosSmoothed, 1_000_000L)
        var grow = 0L
        val ceiling = mux.windowCeiling
        if (w < ceiling && now - lastGrantNanos < 2 * rtt) {
            val bigger = minOf(w * 2, ceiling)
            if (mux.mayGrow(bigger - w)) {
                grow = bigger - w
                window = bigger
            }
        }
        lastGrantNanos = now
        val inc = minOf(unreturned + grow, 0xffff_ffffL)
        unreturned = 0
        granted.addAndGet(inc)
        mux.send(Frame.Window(id, inc))
    }

    /** Largest DATA payload per frame: the natural read size for a busy stream. */
    val maxData: Int get() = mux.config.maxData

    /** Our current receive window (for tests and diagnostics). */
    val receiveWindow: Long get() = window

    /** Send credit the server granted and we have not spent yet. */
    val sendCredit: Long get() = credit.available()

    /**
     * Sends [len] bytes of [bytes] from [off] as DATA, within the stream's and the connection's
     * credit, in frames of at most [MuxConfig.maxData]; [fin] ends our direction with the last
     * frame. Blocks while there is no credit, at most [timeoutMillis] per wait.
     */
    fun write(bytes: ByteArray, off: Int, len: Int, fin: Boolean = false, timeoutMillis: Long = Long.MAX_VALUE / 1_000_000): SendResult =
        write(bytes, off, len, fin, timeoutMillis, owned = false)

    /**
     * Like [write], for an array the caller hands over and never touches again: when one frame
     * carries all of it, the frame keeps the array itself instead of a copy.
     */
    fun writeOwned(bytes: ByteArray, fin: Boolean = false, timeoutMillis: Long = Long.MAX_VALUE / 1_000_000): SendResult =
        write(bytes, 0, bytes.size, fin, timeoutMillis, owned = true)

    private fun write(bytes: ByteArray, off: Int, len: Int, fin: Boolean, timeoutMillis: Long, owned: Boolean): SendResult {
        require(off >= 0 && len >= 0 && off + len <= bytes.size) { "range $off+$len outside ${bytes.size} bytes" }
        if (sentFin.get()) return SendResult.CLOSED
        if (len == 0) return if (fin) sendFin() else SendResult.SENT
        val timeout = TimeUnit.MILLISECONDS.toNanos(timeoutMillis)
        var at = off
        val end = off + len
        while (at < end) {
            val streamAvail = credit.await(timeout)
            if (streamAvail < 0) return SendResult.CLOSED
            if (streamAvail == 0L) return SendResult.TIMED_OUT
            val want = minOf(end - at, mux.config.maxData).toLong().coerceAtMost(streamAvail)
            val n = mux.connCredit.take(want, timeout)
            if (n < 0) return SendResult.CLOSED
            if (n == 0L) return SendResult.TIMED_OUT
            credit.spend(n)
            val last = at + n.toInt() == end
            if (last && fin && !sentFin.compareAndSet(false, true)) return SendResult.CLOSED
            val whole = owned && at == 0 && n.toInt() == bytes.size
            mux.send(Frame.Data(id, last && fin, if (whole) Bytes.wrap(bytes) else Bytes.of(bytes, at, at + n.toInt())))
            at += n.toInt()
        }
        return if (mux.isClosed) SendResult.CLOSED else SendResult.SENT
    }

    /** Ends our direction with an empty DATA+FIN (no credit needed). */
    fun sendFin(): SendResult {
        if (!sentFin.compareAndSet(false, true)) return SendResult.CLOSED
        mux.send(Frame.Data(id, true, Bytes.EMPTY))
        return if (mux.isClosed) SendResult.CLOSED else SendResult.SENT
    }

    /** Abandons the stream with a RESET to the server (both threads see it). */
    fun reset(reason: ResetReason, message: String) {
        mux.resetStream(id, reason, message)
    }

    /**
     * The owner is done with the stream (both threads ended). A stream that did not finish
     * cleanly — FIN both ways — and is still known is reset towards the server. Idempotent.
     */
    fun release() {
        if (!released.compareAndSet(false, true)) return
        val stillKnown = mux.remove(id) != null
        credit.close()
        if (stillKnown && !(sentFin.get() && gotFin.get())) {
            mux.send(Frame.Reset(id, ResetReason.CANCEL, "stream abandoned"))
        }
        finish(dropQueued = true)
    }
}
