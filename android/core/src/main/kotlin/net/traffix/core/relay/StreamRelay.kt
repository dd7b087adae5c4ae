package net.traffix.core.relay

import java.io.IOException
import java.net.Socket
import java.net.SocketTimeoutException
import java.util.concurrent.ExecutorService
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicLong
import net.traffix.core.mux.Inbound
import net.traffix.core.mux.MuxStream
import net.traffix.core.mux.SendResult
import net.traffix.core.protocol.ResetReason
import net.traffix.core.time.Clock

/** How a relayed stream ended (the Rust relay's `RelayEnd`). */
enum class RelayEnd(val text: String) {
    /** Both directions finished with EOF. */
    CLOSED("closed"),

    /** The server reset the stream or the tunnel went away. */
    PEER_RESET("peer_reset"),

    /** The target's socket failed. */
    SOCKET_ERROR("socket_error"),

    /** Nothing moved either way for the idle timeout. */
    IDLE("idle_timeout"),
}

/** Totals of one relayed stream: [sent] from the target into the tunnel, [received] the other way. */
data class RelayStats(val sent: Long, val received: Long, val end: RelayEnd)

/**
 * Copies bytes between a dialed target [socket] and its [stream], both ways, with half-close and
 * an idle timeout — the node half of src/tunnel/copy.rs on plain threads. The calling thread
 * carries tunnel → target; one thread from [pool] carries target → tunnel. [onBytes] hears every
 * chunk (for the owner's data caps) from either thread.
 *
 * Memory: an idle stream holds one 4 KiB read buffer, allocated once. A stream whose reads fill
 * it switches to a full-frame buffer (up to 64 KiB) and back after [SLOW_READS_TO_SHRINK] short
 * reads in a row, so a bursty flow does not reallocate on every change. A read that fills the
 * full-frame buffer hands that array to its DATA frame as it is (no copy) and takes a fresh one;
 * a shorter read is copied once into its frame and the buffer is reused. Inbound bytes wait in
 * the multiplexer's budget ([net.traffix.core.mux.Mux]) until this relay has written them.
 */
class StreamRelay(
    private val socket: Socket,
    private val stream: MuxStream,
    private val pool: ExecutorService,
    private val idleTimeoutMillis: Long,
    private val clock: Clock = Clock.SYSTEM,
    private val onBytes: (Long) -> Unit = {},
) {
    private val lastActivity = AtomicLong(clock.nanoTime())
    private val maxData = stream.maxData

    private fun touch() = lastActivity.set(clock.nanoTime())

    private fun idleLongEnough(): Boolean =
        clock.nanoTime() - lastActivity.get() >= TimeUnit.MILLISECONDS.toNanos(idleTimeoutMillis)

    /** Runs until both directions are done; releases the stream and closes the socket. */
    fun run(): RelayStats {
        val up = pool.submit<Pair<Long, RelayEnd?>> { upLoop() }
        val (received, downEnd) = downLoop()
        val (sent, upEnd) =
            try {
                up.get()
            } catch (e: Exception) {
                Pair(0L, RelayEnd.SOCKET_ERROR)
            }
        Dialer.closeQuietly(socket)
        val end =
            when {
                upEnd == RelayEnd.SOCKET_ERROR || downEnd == RelayEnd.SOCKET_ERROR -> RelayEnd.SOCKET_ERROR
                // One loop timing out resets the stream, which the other loop may then see as a
                // reset: the stream ended idle, whichever loop finished first.
                upEnd == RelayEnd.IDLE || downEnd == RelayEnd.IDLE -> RelayEnd.IDLE
                downEnd != null -> downEnd
                upEnd != null -> upEnd
                else -> RelayEnd.CLOSED
            }
        if (end == RelayEnd.SOCKET_ERROR || end == RelayEnd.IDLE) {
            stream.reset(if (end == RelayEnd.IDLE) ResetReason.IDLE_TIMEOUT else ResetReason.CANCEL, end.text)
        }
        stream.release()
        return RelayStats(sent, received, end)
    }

    /** target → tunnel. Returns bytes sent and how it ended (null: our FIN went out). */
    private fun upLoop(): Pair<Long, RelayEnd?> {
        var sent = 0L
        val small = ByteArray(SMALL_READ)
        var large: ByteArray? = null
        var buf = small
        var shortReads = 0
        val input =
            try {
                socket.soTimeout = idleTimeoutMillis.coerceIn(1, Int.MAX_VALUE.toLong()).toInt()
                socket.getInputStream()
            } catch (e: IOException) {
                // The other direction may already have closed the socket on a server RESET.
                return Pair(0L, if (socket.isClosed) RelayEnd.PEER_RESET else RelayEnd.SOCKET_ERROR)
            }
        while (true) {
            val n =
                try {
                    input.read(buf)
                } catch (e: SocketTimeoutException) {
                    if (idleLongEnough()) {
                        stream.reset(ResetReason.IDLE_TIMEOUT, "idle timeout")
                        return Pair(sent, RelayEnd.IDLE)
                    }
                    continue
                } catch (e: IOException) {
                    // Also how this loop learns that the other direction closed the socket.
                    if (socket.isClosed) return Pair(sent, RelayEnd.PEER_RESET)
                    stream.reset(ResetReason.CANCEL, "target socket error")
                    return Pair(sent, RelayEnd.SOCKET_ERROR)
                }
            if (n < 0) {
                stream.sendFin()
                return Pair(sent, null)
            }
            if (n == 0) continue
            touch()
            onBytes(n.toLong())
            val handOver = buf !== small && n == buf.size
            val result = if (handOver) stream.writeOwned(buf) else stream.write(buf, 0, n)
            when (result) {
                SendResult.SENT -> sent += n
                SendResult.CLOSED -> return Pair(sent, RelayEnd.PEER_RESET)
                SendResult.TIMED_OUT -> return Pair(sent, RelayEnd.IDLE)
            }
            // Grow to a full frame while reads fill the buffer; shrink back once the flow trickles.
            shortReads = if (n < SMALL_READ) shortReads + 1 else 0
            buf =
                when {
                    handOver -> ByteArray(maxData).also { large = it }
                    buf === small && n == small.size && maxData > SMALL_READ -> large ?: ByteArray(maxData).also { large = it }
                    buf !== small && shortReads >= SLOW_READS_TO_SHRINK -> {
                        large = null // an idle stream keeps only the small buffer
                        small
                    }
                    else -> buf
                }
        }
    }

    /** tunnel → target. Returns bytes delivered and how it ended (null: the server's FIN arrived). */
    private fun downLoop(): Pair<Long, RelayEnd?> {
        var received = 0L
        val output =
            try {
                socket.getOutputStream()
            } catch (e: IOException) {
                Dialer.closeQuietly(socket)
                return Pair(0L, RelayEnd.SOCKET_ERROR)
            }
        while (true) {
            when (val ev = stream.receive(idleTimeoutMillis)) {
                null ->
                    if (idleLongEnough()) {
                        stream.reset(ResetReason.IDLE_TIMEOUT, "idle timeout")
                        Dialer.closeQuietly(socket)
                        return Pair(received, RelayEnd.IDLE)
                    }
                is Inbound.Data -> {
                    touch()
                    try {
                        ev.payload.writeTo(output)
                    } catch (e: IOException) {
                        stream.reset(ResetReason.CANCEL, "target socket error")
                        Dialer.closeQuietly(socket)
                        return Pair(received, RelayEnd.SOCKET_ERROR)
                    }
                    val n = ev.payload.size
                    received += n
                    onBytes(n.toLong())
                    stream.consumed(n)
                }
                is Inbound.Fin -> {
                    try {
                        socket.shutdownOutput()
                    } catch (_: IOException) {
                    }
                    return Pair(received, null)
                }
                is Inbound.Reset -> {
                    // Wakes the other loop: its read fails on the closed socket.
                    Dialer.closeQuietly(socket)
                    return Pair(received, RelayEnd.PEER_RESET)
                }
            }
        }
    }

    companion object {
        /** Read size while the target trickles or idles. */
        const val SMALL_READ = 4 * 1024

        /** Short reads in a row after which a stream goes back to its small buffer. */
        const val SLOW_READS_TO_SHRINK = 4
    }
}
