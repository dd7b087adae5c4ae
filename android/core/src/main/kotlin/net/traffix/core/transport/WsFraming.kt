package net.traffix.core.transport

import java.io.EOFException
import java.io.IOException
import java.io.InputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.security.MessageDigest
import java.util.Base64

/*
 * RFC 6455 framing for the node's side of the tunnel (a WebSocket client): masked frames out
 * (unmasked once the server accepted [WsFraming.UNMASKED]), unmasked frames in. [SocketTransport]
 * drives it on a TLS socket. Masking is done eight bytes at a time while the payload is copied
 * into the write buffer, so it costs one pass over bytes the writer copies anyway (OkHttp masks a
 * byte at a time: docs/benchmarks.md "Android core").
 */

/** A violation of RFC 6455 by the server, or a frame past our limits. */
class WsProtocolException(message: String) : IOException(message)

/** WebSocket opcodes (RFC 6455 §5.2). */
object WsOp {
    const val CONTINUATION = 0x0
    const val TEXT = 0x1
    const val BINARY = 0x2
    const val CLOSE = 0x8
    const val PING = 0x9
    const val PONG = 0xA

    fun isControl(op: Int): Boolean = op and 0x8 != 0
}

/** One message read from the server: [op] is TEXT, BINARY, CLOSE, PING or PONG. */
class WsMessage(val op: Int, val payload: ByteArray)

object WsFraming {
    /** Largest header of a masked client frame: 2 + 8 (64-bit length) + 4 (mask key). */
    const val MAX_CLIENT_HEADER = 14

    /** Largest control frame payload (RFC 6455 §5.5). */
    const val MAX_CONTROL_PAYLOAD = 125

    private const val ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /**
     * The extension by which a node sends its frames unmasked inside TLS (docs/protocol.md
     * "Unmasked frames"): offered in Sec-WebSocket-Extensions, accepted by the server's echo.
     */
    const val UNMASKED = "x-traffix-unmasked"

    /** Whether a Sec-WebSocket-Extensions value names [UNMASKED] (without parameters). */
    fun namesUnmasked(value: String): Boolean = value.split(',').any { it.trim().equals(UNMASKED, ignoreCase = true) }

    /**
     * Writes the header of one final frame of [op] with a payload of [length] bytes at [off] of
     * [out] (which has [MAX_CLIENT_HEADER] bytes of room), masked with [key], or unmasked when it
     * is null (after [UNMASKED]); returns its length.
     */
    fun writeClientHeader(out: ByteArray, off: Int, op: Int, length: Int, key: Int?): Int {
        require(length >= 0)
        val m = if (key != null) 0x80 else 0
        out[off] = (0x80 or op).toByte()
        var p = off + 1
        when {
            length <= 125 -> out[p++] = (m or length).toByte()
            length <= 0xFFFF -> {
                out[p++] = (m or 126).toByte()
                out[p++] = (length ushr 8).toByte()
                out[p++] = length.toByte()
            }
            else -> {
                out[p++] = (m or 127).toByte()
                for (shift in 56 downTo 0 step 8) out[p++] = (length.toLong() ushr shift).toByte()
            }
        }
        if (key != null) for (shift in 24 downTo 0 step 8) out[p++] = (key ushr shift).toByte()
        return p - off
    }

    /**
     * Copies [length] bytes of [src] from [srcOff] to [dst] at [dstOff], masked with [key] (its
     * bytes in network order, RFC 6455 §5.3) as if the first byte were at [phase] (0–3) of the
     * payload. Eight bytes a time; the tail byte by byte.
     */
    fun maskCopy(src: ByteArray, srcOff: Int, dst: ByteArray, dstOff: Int, length: Int, key: Int, phase: Int) {
        // The key's bytes from [phase] on, repeated over eight bytes as a little-endian long (the
        // order the data is read in below): byte i of the data meets the key's byte (phase + i) % 4.
        val rotated = Integer.reverseBytes(Integer.rotateLeft(key, 8 * phase)).toLong() and 0xFFFFFFFFL
        val wide = rotated or (rotated shl 32)
        val s = ByteBuffer.wrap(src).order(ByteOrder.LITTLE_ENDIAN)
        val d = ByteBuffer.wrap(dst).order(ByteOrder.LITTLE_ENDIAN)
        var i = 0
        val words = length - (length and 7)
        while (i < words) {
            d.putLong(dstOff + i, s.getLong(srcOff + i) xor wide)
            i += 8
        }
        while (i < length) {
            dst[dstOff + i] = (src[srcOff + i].toLong() xor (wide ushr (8 * (i and 3)))).toByte()
            i++
        }
    }

    /** The Sec-WebSocket-Accept a server must answer to [key] (RFC 6455 §4.2.2). */
    fun acceptFor(key: String): String =
        Base64.getEncoder().encodeToString(MessageDigest.getInstance("SHA-1").digest((key + ACCEPT_GUID).toByteArray(Charsets.US_ASCII)))
}

/**
 * Reads the server's frames from [input] (a buffered stream), joining fragments, within
 * [maxMessage] bytes a message. Not thread-safe: the transport's reader thread owns it.
 */
class WsFrameReader(private val input: InputStream, private val maxMessage: Int) {
    private val head = ByteArray(8)

    /** A fragmented message being joined (kept across a control frame between its fragments). */
    private var fragments: ByteArray? = null
    private var fragmentsLen = 0
    private var firstOp = -1

    /**
     * The next whole message; a control frame between the fragments of a message comes first.
     * Throws [EOFException] at the end of the stream.
     */
    fun next(): WsMessage {
        while (true) {
            readFully(head, 2, atBoundary = fragments == null)
            val b0 = head[0].toInt() and 0xFF
            val b1 = head[1].toInt() and 0xFF
            val fin = b0 and 0x80 != 0
            if (b0 and 0x70 != 0) throw WsProtocolException("reserved bits set (no extension was negotiated)")
            val op = b0 and 0x0F
            if (b1 and 0x80 != 0) throw WsProtocolException("the server sent a masked frame")
            var len = (b1 and 0x7F).toLong()
            if (len == 126L) {
                readFully(head, 2)
                len = ((head[0].toLong() and 0xFF) shl 8) or (head[1].toLong() and 0xFF)
            } else if (len == 127L) {
                readFully(head, 8)
                len = ByteBuffer.wrap(head).getLong(0)
                if (len < 0) throw WsProtocolException("frame length has its top bit set")
            }
            when {
                WsOp.isControl(op) -> {
                    if (op != WsOp.CLOSE && op != WsOp.PING && op != WsOp.PONG) throw WsProtocolException("unknown opcode $op")
                    if (!fin) throw WsProtocolException("fragmented control frame")
                    if (len > WsFraming.MAX_CONTROL_PAYLOAD) throw WsProtocolException("control frame of $len bytes")
                    // Allowed between the fragments of a message.
                    return WsMessage(op, readPayload(len.toInt()))
                }
                op == WsOp.CONTINUATION -> if (firstOp < 0) throw WsProtocolException("continuation frame with no message to continue")
                op == WsOp.TEXT || op == WsOp.BINARY -> if (firstOp >= 0) throw WsProtocolException("new message inside a fragmented one")
                else -> throw WsProtocolException("unknown opcode $op")
            }
            if (len > maxMessage - fragmentsLen) throw WsProtocolException("message over $maxMessage bytes")
            if (fin && firstOp < 0) return WsMessage(op, readPayload(len.toInt()))
            if (firstOp < 0) firstOp = op
            val buf = fragments ?: ByteArray(maxOf(len.toInt(), 1024).coerceAtMost(maxMessage))
            val grown = if (buf.size < fragmentsLen + len) buf.copyOf(minOf(maxMessage.toLong(), maxOf(2L * buf.size, fragmentsLen + len)).toInt()) else buf
            readFully(grown, len.toInt(), fragmentsLen)
            fragments = grown
            fragmentsLen += len.toInt()
            if (fin) {
                val m = WsMessage(firstOp, grown.copyOf(fragmentsLen))
                fragments = null
                fragmentsLen = 0
                firstOp = -1
                return m
            }
        }
    }

    private fun readPayload(len: Int): ByteArray {
        val out = ByteArray(len)
        readFully(out, len)
        return out
    }

    /** Reads [len] bytes into [buf] at [off]; [atBoundary]: an end before the first is clean. */
    private fun readFully(buf: ByteArray, len: Int, off: Int = 0, atBoundary: Boolean = false) {
        var got = 0
        while (got < len) {
            val n = input.read(buf, off + got, len - got)
            if (n < 0) throw EOFException(if (atBoundary && got == 0) "connection closed by the server" else "connection closed inside a frame")
            got += n
        }
    }
}
