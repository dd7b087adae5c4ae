package net.traffix.core.transport

import java.io.BufferedInputStream
import java.io.EOFException
import java.io.IOException
import java.io.InputStream
import java.io.OutputStream
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.ProtocolException
import java.net.Socket
import java.net.UnknownHostException
import java.security.SecureRandom
import java.util.ArrayDeque
import java.util.Base64
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock
import javax.net.SocketFactory
import javax.net.ssl.SSLContext
import javax.net.ssl.SSLPeerUnverifiedException
import javax.net.ssl.SSLSocket
import net.traffix.core.util.Bytes
import net.traffix.core.util.cutUtf8

/*
 * The tunnel's WebSocket on a plain JDK socket: TCP from the given socket factory (on Android the
 * chosen network's), TLS 1.3 from the platform with trust by pin, the HTTP upgrade written and
 * checked here, and RFC 6455 frames from WsFraming.kt. It replaces OkHttp's WebSocket on the data
 * path: OkHttp masks each client frame a byte at a time, which was 70 % of the Kotlin node's
 * profile (docs/benchmarks.md "Android core"); here masking is a word-wide pass fused with the
 * copy into the write buffer.
 *
 * Two threads per tunnel: the reader connects, then hears frames and calls the listener; the
 * writer drains the queue, gathering what is queued into as few TLS writes as it can.
 */

/**
 * Tunnels over a JDK socket: TLS 1.3 only, trust by [PinnedTrustManager], no WebSocket pings (the
 * agent's heartbeats are the tunnel's only keepalive, docs/protocol.md "One keepalive"); the
 * server's pings, should an older server send them, are answered.
 *
 * A write to a server that stopped reading blocks the writer (JDK sockets have no write timeout);
 * the agent's liveness rule then cancels the socket, which closes the TCP socket under TLS and so
 * ends the write. A close that cannot be written ends the tunnel after [CLOSE_LINGER_MILLIS].
 */
class SocketTransport(
    /** Bounds the TCP connect, the TLS handshake and the HTTP upgrade, each. */
    private val connectTimeoutMillis: Int = 10_000,
    /** Test servers run `--insecure-http`: allow `ws://` only when asked. */
    private val allowPlainWs: Boolean = false,
    /** Makes the tunnel's TCP sockets (TLS goes on top). */
    private val socketFactory: SocketFactory = SocketFactory.getDefault(),
    /** Bytes queued for the writer at most; past it the socket closes (as OkHttp's, 16 MiB). */
    private val maxQueuedBytes: Long = 16L * 1024 * 1024,
    /** Largest message accepted from the server (a tunnel frame is at most 64 KiB + 6 bytes). */
    private val maxMessageBytes: Int = 1 shl 20,
    /**
     * Over TLS, offer to send frames unmasked ([WsFraming.UNMASKED]); masking is kept when the
     * server does not accept. Off only to measure masking (docs/benchmarks.md).
     */
    private val offerUnmasked: Boolean = true,
) : TunnelTransport {
    override fun open(url: String, pin: Bytes, listener: TunnelListener): TunnelSocket {
        val target = TunnelUrl.parse(url, allowPlainWs)
        val conn = Conn(target, pin, listener)
        Thread(conn::runReader, "traffix-tunnel-reader").apply { isDaemon = true }.start()
        return conn
    }

    /** What the writer is asked to send. */
    private sealed class Out(val size: Int) {
        class Message(val bytes: ByteArray) : Out(bytes.size)

        class Pong(val payload: ByteArray) : Out(payload.size)

        class Close(val payload: ByteArray) : Out(payload.size)
    }

    private inner class Conn(
        private val target: TunnelUrl,
        private val pin: Bytes,
        private val listener: TunnelListener,
    ) : TunnelSocket {
        private val lock = ReentrantLock()
        private val changed = lock.newCondition()
        private val queue = ArrayDeque<Out>()
        private var queuedBytes = 0L

        /** A close frame is queued: nothing more may be sent. */
        private var closeQueued = false

        /** The reader has ended: the writer stops. */
        private var readerDone = false
        private val readerEnded = CountDownLatch(1)

        /** The writer has sent a close frame, or stopped. */
        private val writerDone = CountDownLatch(1)
        private val ended = AtomicBoolean(false)

        /**
         * The TCP socket under TLS. Closing it (not the TLS socket, whose close waits for a write
         * in progress on the JDK) is how [cancel] and the close deadline end blocked reads and
         * writes at once.
         */
        @Volatile private var raw: Socket? = null

        @Volatile private var cancelled = false

        override fun send(message: ByteArray): Boolean = enqueue(Out.Message(message))

        override fun close(code: Int, reason: String) {
            enqueue(Out.Close(closePayload(code, reason)))
        }

        override fun cancel() {
            cancelled = true
            lock.withLock {
                queue.clear()
                queuedBytes = 0
                changed.signalAll()
            }
            closeQuietly(raw)
        }

        private fun enqueue(out: Out): Boolean {
            lock.withLock {
                if (closeQueued || cancelled || readerDone) return false
                val close =
                    when {
                        out is Out.Close -> out
                        queuedBytes + out.size <= maxQueuedBytes -> null
                        // A server that floods pings and does not read: its pongs are dropped.
                        out is Out.Pong -> return false
                        // The server does not read what we send: close as OkHttp does (1001, going away).
                        else -> Out.Close(closePayload(1001, ""))
                    }
                if (close != null) {
                    closeQueued = true
                    startCloseDeadline()
                }
                val queued = close ?: out
                queue.add(queued)
                queuedBytes += queued.size
                changed.signalAll()
                return queued === out
            }
        }

        /**
         * A close must end the tunnel even when the writer cannot get the close frame out (a
         * server that stopped reading): after [CLOSE_LINGER_MILLIS] the TCP socket is closed.
         */
        private fun startCloseDeadline() {
            Thread({
                if (!readerEnded.await(CLOSE_LINGER_MILLIS, TimeUnit.MILLISECONDS)) closeQuietly(raw)
            }, "traffix-tunnel-close").apply { isDaemon = true }.start()
        }

        fun runReader() {
            var why = "reader stopped"
            try {
                val c = connect()
                Thread({ runWriter(c.out, c.unmasked) }, "traffix-tunnel-writer").apply { isDaemon = true }.start()
                listener.onOpen(this)
                why = readFrames(WsFrameReader(c.input, maxMessageBytes))
            } catch (e: Exception) {
                why = if (cancelled) "cancelled" else describe(e)
            } finally {
                lock.withLock {
                    readerDone = true
                    changed.signalAll()
                }
                readerEnded.countDown()
                closeQuietly(raw)
                if (ended.compareAndSet(false, true)) {
                    try {
                        listener.onClosed(this, why)
                    } catch (e: RuntimeException) {
                        // The listener's own failure must not take the process down with it.
                    }
                }
            }
        }

        /** Hears messages until the server closes; returns why the tunnel ended. */
        private fun readFrames(frames: WsFrameReader): String {
            while (true) {
                val m = frames.next()
                when (m.op) {
                    WsOp.BINARY -> listener.onMessage(this, m.payload)
                    WsOp.TEXT -> listener.onText(this)
                    WsOp.PING -> enqueue(Out.Pong(m.payload))
                    WsOp.PONG -> {}
                    WsOp.CLOSE -> {
                        enqueue(Out.Close(closePayload(CloseCodes.NORMAL, "")))
                        val code = if (m.payload.size >= 2) ((m.payload[0].toInt() and 0xFF) shl 8) or (m.payload[1].toInt() and 0xFF) else 1005
                        val reason = if (m.payload.size > 2) String(m.payload, 2, m.payload.size - 2, Charsets.UTF_8) else ""
                        // Let the writer send our close frame before the socket goes.
                        writerDone.await(CLOSE_LINGER_MILLIS, TimeUnit.MILLISECONDS)
                        return "server closed the tunnel ($code${if (reason.isEmpty()) "" else ": $reason"})"
                    }
                }
            }
        }

        private fun runWriter(out: OutputStream, unmasked: Boolean) {
            try {
                val w = FrameWriter(out, unmasked)
                while (true) {
                    val batch = ArrayList<Out>()
                    lock.withLock {
                        while (queue.isEmpty() && !readerDone && !cancelled) changed.await()
                        if (queue.isEmpty()) return
                        while (batch.size < MAX_BATCH_FRAMES) {
                            val o = queue.poll() ?: break
                            queuedBytes -= o.size
                            batch.add(o)
                        }
                    }
                    var closing = false
                    for (o in batch) {
                        when (o) {
                            is Out.Message -> w.frame(WsOp.BINARY, o.bytes)
                            is Out.Pong -> w.frame(WsOp.PONG, o.payload)
                            is Out.Close -> {
                                w.frame(WsOp.CLOSE, o.payload)
                                closing = true
                            }
                        }
                        if (closing) break
                    }
                    w.flush()
                    if (closing) return // the reader waits for the server's close; the deadline bounds it
                }
            } catch (e: Exception) {
                // A failed write (or anything else): the reader sees the socket go and ends the
                // tunnel; nothing escapes this thread.
                closeQuietly(raw)
            } finally {
                writerDone.countDown()
            }
        }

        /** What [connect] hands to the reader and the writer. */
        private inner class Connected(val input: InputStream, val out: OutputStream, val unmasked: Boolean)

        /** TCP, TLS with the pin, the upgrade: the streams, ready for frames. */
        private fun connect(): Connected {
            val tcp = dial()
            tcp.tcpNoDelay = true
            tcp.soTimeout = connectTimeoutMillis
            val s =
                if (target.tls) {
                    val trust = PinnedTrustManager(pin)
                    val ctx = SSLContext.getInstance("TLS")
                    ctx.init(null, arrayOf(trust), SecureRandom())
                    // The host name goes into SNI (the platform leaves it out for an IP literal).
                    val ssl = ctx.socketFactory.createSocket(tcp, target.host, target.port, true) as SSLSocket
                    ssl.enabledProtocols = arrayOf("TLSv1.3")
                    ssl.startHandshake()
                    if (!PinnedHostnameVerifier(pin).verify(target.host, ssl.session)) {
                        throw SSLPeerUnverifiedException("server key does not match the pairing link's pin")
                    }
                    ssl
                } else {
                    tcp
                }
            if (cancelled) throw IOException("cancelled")
            val input = BufferedInputStream(s.getInputStream(), READ_BUFFER)
            val key = ByteArray(16).also { SecureRandom().nextBytes(it) }.let { Base64.getEncoder().encodeToString(it) }
            val out = s.getOutputStream()
            val offer = offerUnmasked && target.tls
            out.write(target.upgradeRequest(key, if (offer) WsFraming.UNMASKED else null).toByteArray(Charsets.US_ASCII))
            out.flush()
            val unmasked = UpgradeResponse.read(input).check(key, offer)
            s.soTimeout = 0 // a quiet tunnel is normal: the agent's liveness rule decides
            return Connected(input, out, unmasked)
        }

        /** Connects to the first address of the host that answers. */
        private fun dial(): Socket {
            var last: IOException? = null
            for (addr in InetAddress.getAllByName(target.host)) {
                val s = socketFactory.createSocket()
                raw = s
                // A cancel that read the previous socket must not miss this one.
                if (cancelled) {
                    closeQuietly(s)
                    throw IOException("cancelled")
                }
                try {
                    s.connect(InetSocketAddress(addr, target.port), connectTimeoutMillis)
                    return s
                } catch (e: IOException) {
                    closeQuietly(s)
                    last = e
                }
            }
            throw last ?: UnknownHostException(target.host)
        }
    }

    /** Frames into one buffer, handed to the socket when full and at the end of a batch. */
    internal class FrameWriter(private val out: OutputStream, private val unmasked: Boolean) {
        private val buf = ByteArray(WRITE_BUFFER)
        private var used = 0
        private val keys = MaskKeys()

        fun frame(op: Int, payload: ByteArray) {
            if (used + WsFraming.MAX_CLIENT_HEADER > buf.size) flush()
            // Unmasked payloads are copied too: batched frames make few, large TLS records, and a
            // header written apart from its payload would be a record of its own.
            val key = if (unmasked) null else keys.next()
            used += WsFraming.writeClientHeader(buf, used, op, payload.size, key)
            var off = 0
            while (off < payload.size) {
                if (used == buf.size) flush()
                val n = minOf(payload.size - off, buf.size - used)
                if (key == null) System.arraycopy(payload, off, buf, used, n) else WsFraming.maskCopy(payload, off, buf, used, n, key, off and 3)
                used += n
                off += n
            }
        }

        fun flush() {
            if (used > 0) out.write(buf, 0, used)
            used = 0
            out.flush()
        }
    }

    /**
     * Mask keys: xorshift seeded from the platform's SecureRandom. Inside TLS a key protects
     * nothing; RFC 6455 still asks for one an observer cannot predict, and a SecureRandom call per
     * frame would cost more than the masking.
     */
    internal class MaskKeys {
        private var x: Long = SecureRandom().nextLong() or 1L

        fun next(): Int {
            x = x xor (x shl 13)
            x = x xor (x ushr 7)
            x = x xor (x shl 17)
            return x.toInt()
        }
    }

    companion object {
        private const val READ_BUFFER = 64 * 1024
        private const val WRITE_BUFFER = 128 * 1024
        private const val MAX_BATCH_FRAMES = 256

        /** How long a closing side waits for the other's close frame before hanging up. */
        private const val CLOSE_LINGER_MILLIS = 5_000L

        /** A close frame's payload: the code, then the reason within the 125-byte control limit. */
        private fun closePayload(code: Int, reason: String): ByteArray =
            byteArrayOf((code ushr 8).toByte(), code.toByte()) + cutUtf8(reason, WsFraming.MAX_CONTROL_PAYLOAD - 2).toByteArray(Charsets.UTF_8)

        private fun closeQuietly(s: Socket?) {
            try {
                s?.close()
            } catch (ignored: IOException) {
                // already closed or failed: nothing left to release
            }
        }

        private fun describe(e: Exception): String =
            when (e) {
                is EOFException -> e.message ?: "connection closed by the server"
                else -> "${e.javaClass.simpleName}: ${e.message ?: "connection failed"}"
            }
    }
}

/** Where a tunnel URL points: `wss://HOST:PORT/PATH` (or `ws://` for test servers). */
internal class TunnelUrl(val tls: Boolean, val host: String, val port: Int, private val path: String, private val hostHeader: String) {
    /**
     * The HTTP/1.1 upgrade request (RFC 6455 §4.1) with [key] as Sec-WebSocket-Key, offering
     * [extension] when given.
     */
    fun upgradeRequest(key: String, extension: String? = null): String =
        "GET $path HTTP/1.1\r\n" +
            "Host: $hostHeader\r\n" +
            "Upgrade: websocket\r\n" +
            "Connection: Upgrade\r\n" +
            "Sec-WebSocket-Key: $key\r\n" +
            "Sec-WebSocket-Version: 13\r\n" +
            (if (extension != null) "Sec-WebSocket-Extensions: $extension\r\n" else "") +
            "\r\n"

    companion object {
        fun parse(url: String, allowPlain: Boolean): TunnelUrl {
            require(url.startsWith("wss://") || (allowPlain && url.startsWith("ws://"))) { "tunnel URL must be wss://: $url" }
            // It goes into the request line and Host header: no spaces or control characters.
            require(url.none { it <= ' ' || it == '\u007f' }) { "tunnel URL with a space or control character: $url" }
            val tls = url.startsWith("wss://")
            val rest = url.substringAfter("://")
            val slash = rest.indexOf('/').let { if (it < 0) rest.length else it }
            val authority = rest.substring(0, slash)
            val path = rest.substring(slash).ifEmpty { "/" }
            val defaultPort = if (tls) 443 else 80
            val hostPart: String
            val portText: String?
            if (authority.startsWith("[")) {
                val close = authority.indexOf(']')
                require(close > 0) { "tunnel URL with an unclosed IPv6 literal: $url" }
                hostPart = authority.substring(0, close + 1)
                val after = authority.substring(close + 1)
                require(after.isEmpty() || after.startsWith(":")) { "tunnel URL with text after its IPv6 literal: $url" }
                portText = after.removePrefix(":").takeIf { after.isNotEmpty() }
            } else {
                val colon = authority.lastIndexOf(':')
                hostPart = if (colon < 0) authority else authority.substring(0, colon)
                portText = if (colon < 0) null else authority.substring(colon + 1)
            }
            val port = portText?.toIntOrNull() ?: if (portText == null) defaultPort else 0
            require(hostPart.length > 2 || (hostPart.isNotEmpty() && !hostPart.startsWith("["))) { "tunnel URL has no host: $url" }
            require(port in 1..65535) { "tunnel URL with a bad port: $url" }
            val host = hostPart.removePrefix("[").removeSuffix("]")
            return TunnelUrl(tls, host, port, path, if (port == defaultPort) hostPart else "$hostPart:$port")
        }
    }
}

/** The server's answer to the upgrade: status and headers (names lower-cased). */
internal class UpgradeResponse(val status: Int, val statusLine: String, val headers: Map<String, List<String>>) {
    /**
     * Throws unless this is a WebSocket upgrade answering [key] (RFC 6455 §4.2.2); returns whether
     * the server accepted [WsFraming.UNMASKED], which may only be chosen when [offeredUnmasked].
     */
    fun check(key: String, offeredUnmasked: Boolean): Boolean {
        if (status != 101) throw ProtocolException("Expected HTTP 101 response but was '$statusLine' (HTTP $status)")
        fun has(name: String, token: String) =
            headers[name].orEmpty().any { v -> v.split(',').any { it.trim().equals(token, ignoreCase = true) } }
        if (!has("upgrade", "websocket")) throw ProtocolException("upgrade answer without Upgrade: websocket")
        if (!has("connection", "upgrade")) throw ProtocolException("upgrade answer without Connection: Upgrade")
        val accept = headers["sec-websocket-accept"]?.singleOrNull()?.trim()
        if (accept != WsFraming.acceptFor(key)) throw ProtocolException("upgrade answer with a wrong Sec-WebSocket-Accept: $accept")
        val chosen = headers["sec-websocket-extensions"].orEmpty().flatMap { it.split(',') }.filter { it.isNotBlank() }
        if (chosen.any { !(offeredUnmasked && WsFraming.namesUnmasked(it)) }) {
            throw ProtocolException("the server chose a WebSocket extension the node did not offer: ${chosen.joinToString(",")}")
        }
        return chosen.isNotEmpty()
    }

    companion object {
        /** Largest response head read. */
        const val MAX_HEAD = 16 * 1024

        /** Reads the head (up to the empty line) from [input]; the frames after it stay there. */
        fun read(input: InputStream): UpgradeResponse {
            val lines = ArrayList<String>()
            val line = StringBuilder()
            var total = 0
            while (true) {
                val b = input.read()
                if (b < 0) throw EOFException("connection closed during the WebSocket upgrade")
                if (++total > MAX_HEAD) throw ProtocolException("upgrade answer head over $MAX_HEAD bytes")
                if (b == '\n'.code) {
                    val l = line.toString().removeSuffix("\r")
                    line.setLength(0)
                    if (l.isEmpty()) break
                    lines.add(l)
                } else {
                    line.append(b.toChar())
                }
            }
            val statusLine = lines.firstOrNull() ?: throw ProtocolException("empty upgrade answer")
            val parts = statusLine.split(' ', limit = 3)
            if (parts.size < 2 || !parts[0].startsWith("HTTP/1.")) throw ProtocolException("not an HTTP answer: ${statusLine.take(80)}")
            val status = parts[1].toIntOrNull() ?: throw ProtocolException("bad status in ${statusLine.take(80)}")
            val headers = HashMap<String, MutableList<String>>()
            for (l in lines.drop(1)) {
                val colon = l.indexOf(':')
                if (colon <= 0) throw ProtocolException("bad header line in the upgrade answer: ${l.take(80)}")
                headers.getOrPut(l.substring(0, colon).trim().lowercase()) { ArrayList() }.add(l.substring(colon + 1).trim())
            }
            return UpgradeResponse(status, statusLine.substringAfter(' '), headers)
        }
    }
}
