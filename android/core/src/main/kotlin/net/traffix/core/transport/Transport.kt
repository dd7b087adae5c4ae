package net.traffix.core.transport

import net.traffix.core.util.Bytes

/*
 * The WebSocket under the tunnel, as the agent sees it: open, send one binary message, hear
 * messages and the end. SocketTransport.kt is the app's (its own framing on a JDK TLS socket);
 * OkHttpTransport.kt, the only file that imports OkHttp, is kept as a third-party client for tests
 * and the node benchmark; tests may plug in their own.
 */

/** Opens tunnels. Safe to call from any thread. */
fun interface TunnelTransport {
    /**
     * Starts connecting to [url] (`wss://HOST:PORT/v1/tunnel`), trusting only a server whose
     * certificate's SubjectPublicKeyInfo hashes to [pin]. Returns at once; [listener] hears
     * [TunnelListener.onOpen] once the upgrade is done, then messages, and exactly one
     * [TunnelListener.onClosed].
     */
    fun open(url: String, pin: Bytes, listener: TunnelListener): TunnelSocket
}

/** One WebSocket. Every method is safe from any thread and returns promptly. */
interface TunnelSocket {
    /** Queues one binary message; false when the socket is closing or closed. */
    fun send(message: ByteArray): Boolean

    /** Closes gracefully with a WebSocket close [code] after the queued messages. */
    fun close(code: Int, reason: String)

    /** Drops the connection at once, discarding what is queued. */
    fun cancel()
}

/**
 * Events of one [TunnelSocket], delivered from the transport's reader thread, in order. The
 * agent keeps its handlers short: stream data goes to the multiplexer, the rest to its own
 * thread.
 */
interface TunnelListener {
    fun onOpen(socket: TunnelSocket)

    /** One binary message: one frame. */
    fun onMessage(socket: TunnelSocket, message: ByteArray)

    /** A text message: a protocol violation (docs/protocol.md "Transport"). */
    fun onText(socket: TunnelSocket)

    /** The socket ended (closed by either side, or failed); called once, last. */
    fun onClosed(socket: TunnelSocket, why: String)
}

/** WebSocket close codes the agent uses. */
object CloseCodes {
    const val NORMAL = 1000
}
