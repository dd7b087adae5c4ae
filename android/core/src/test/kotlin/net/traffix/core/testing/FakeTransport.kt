package net.traffix.core.testing

import java.util.concurrent.CopyOnWriteArrayList
import net.traffix.core.protocol.DecodeResult
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.FrameCodec
import net.traffix.core.transport.TunnelListener
import net.traffix.core.transport.TunnelSocket
import net.traffix.core.transport.TunnelTransport
import net.traffix.core.util.Bytes

/**
 * A transport whose "server" is the test: every [open] makes a [FakeSocket]; the test plays the
 * server by calling [FakeSocket.open], [FakeSocket.deliver] and [FakeSocket.drop], and reads
 * what the agent sent from [FakeSocket.sent].
 */
class FakeTransport : TunnelTransport {
    val sockets = CopyOnWriteArrayList<FakeSocket>()

    val last: FakeSocket get() = sockets.last()

    override fun open(url: String, pin: Bytes, listener: TunnelListener): TunnelSocket {
        val s = FakeSocket(url, pin, listener)
        sockets.add(s)
        return s
    }

    class FakeSocket(val url: String, val pin: Bytes, private val listener: TunnelListener) : TunnelSocket {
        /** Frames the agent sent, decoded (a frame that does not decode fails the test). */
        val sent = CopyOnWriteArrayList<Frame>()

        @Volatile var closedWith: Int? = null

        @Volatile var cancelled = false

        override fun send(message: ByteArray): Boolean {
            if (closedWith != null || cancelled) return false
            when (val r = FrameCodec.decode(message)) {
                is DecodeResult.Ok -> sent.add(r.frame)
                is DecodeResult.Err -> throw AssertionError("agent sent an undecodable frame: ${r.error}")
            }
            return true
        }

        override fun close(code: Int, reason: String) {
            if (closedWith == null) closedWith = code
        }

        override fun cancel() {
            cancelled = true
        }

        /** The WebSocket upgrade succeeded. */
        fun open() = listener.onOpen(this)

        /** The server sends [frame]. */
        fun deliver(frame: Frame) = listener.onMessage(this, FrameCodec.encode(frame))

        fun deliverRaw(bytes: ByteArray) = listener.onMessage(this, bytes)

        fun deliverText() = listener.onText(this)

        /** The connection ends. */
        fun drop(why: String = "connection reset") = listener.onClosed(this, why)

        inline fun <reified T : Frame> sentOf(): List<T> = sent.filterIsInstance<T>()
    }
}
