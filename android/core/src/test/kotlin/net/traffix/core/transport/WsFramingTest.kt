package net.traffix.core.transport

import java.io.ByteArrayInputStream
import java.io.EOFException
import java.util.Random
import net.traffix.core.testing.Case
import net.traffix.core.testing.Vectors
import net.traffix.core.util.Hex
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

/**
 * RFC 6455 framing against the RFC's own examples (§5.7, §1.3), the word-wide masking against a
 * byte-wise reference at every length and phase, and hostile or broken server frames: each is
 * refused with a clear reason, none is read past its limit.
 */
class WsFramingTest {
    private fun reader(hex: String, max: Int = 1 shl 20) = WsFrameReader(ByteArrayInputStream(Hex.decode(hex)), max)

    private fun reader(bytes: ByteArray, max: Int = 1 shl 20) = WsFrameReader(ByteArrayInputStream(bytes), max)

    /** A masked client frame of [payload], as the writer sends it. */
    private fun clientFrame(op: Int, payload: ByteArray, key: Int): ByteArray {
        val out = ByteArray(WsFraming.MAX_CLIENT_HEADER + payload.size)
        val h = WsFraming.writeClientHeader(out, 0, op, payload.size, key)
        WsFraming.maskCopy(payload, 0, out, h, payload.size, key, 0)
        return out.copyOf(h + payload.size)
    }

    @Test
    fun theRfcsMaskedHelloIsWhatTheWriterSends() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello", key 37 fa 21 3d.
        val frame = clientFrame(WsOp.TEXT, "Hello".toByteArray(), 0x37fa213d)
        assertEquals("818537fa213d7f9f4d5158", Hex.encode(frame))
    }

    @Test
    fun theRfcsUnmaskedFramesAreRead() {
        val hello = reader("810548656c6c6f").next()
        assertEquals(WsOp.TEXT, hello.op)
        assertEquals("Hello", String(hello.payload))
        // Fragmented: "Hel" then "lo".
        val joined = reader("010348656c80026c6f").next()
        assertEquals("Hello", String(joined.payload))
        // Unmasked ping, then 256 bytes and 64 KiB binary messages (16- and 64-bit lengths).
        assertEquals(WsOp.PING, reader("890548656c6c6f").next().op)
        val r = reader(Hex.decode("827e0100") + ByteArray(256) { it.toByte() } + Hex.decode("827f0000000000010000") + ByteArray(65536) { 7 })
        assertArrayEquals(ByteArray(256) { it.toByte() }, r.next().payload)
        assertEquals(65536, r.next().payload.size)
        assertThrows(EOFException::class.java) { r.next() }
    }

    @Test
    fun aControlFrameBetweenFragmentsIsDeliveredFirst() {
        // "Hel", a pong, then "lo" (RFC 6455 §5.4: control frames may come between fragments).
        val r = reader("010348656c" + "8a00" + "80026c6f" + "8203616263")
        assertEquals(WsOp.PONG, r.next().op)
        assertEquals("Hello", String(r.next().payload))
        // The joined message left nothing behind: the next one stands alone.
        val abc = r.next()
        assertEquals(WsOp.BINARY, abc.op)
        assertEquals("abc", String(abc.payload))
    }

    @Test
    fun wordWideMaskingEqualsTheByteWiseRuleAtEveryLengthOffsetAndPhase() {
        val rnd = Random(6455)
        for (len in 0..40) {
            for (phase in 0..3) {
                for (srcOff in 0..3) {
                    val src = ByteArray(srcOff + len).also { rnd.nextBytes(it) }
                    val key = rnd.nextInt()
                    val dst = ByteArray(len + 5)
                    WsFraming.maskCopy(src, srcOff, dst, 3, len, key, phase)
                    for (i in 0 until len) {
                        val k = (key ushr (24 - 8 * ((phase + i) % 4))).toByte()
                        assertEquals("len $len phase $phase byte $i", (src[srcOff + i].toInt() xor k.toInt()).toByte(), dst[3 + i])
                    }
                    assertEquals(0.toByte(), dst[0])
                    assertEquals(0.toByte(), dst[len + 4])
                }
            }
        }
        // Masking twice is the identity, split anywhere (the writer masks a payload in pieces).
        val data = ByteArray(70_000).also { rnd.nextBytes(it) }
        val key = 0x01020304
        val once = ByteArray(data.size)
        WsFraming.maskCopy(data, 0, once, 0, 12_345, key, 0)
        WsFraming.maskCopy(data, 12_345, once, 12_345, data.size - 12_345, key, 12_345 and 3)
        val twice = ByteArray(data.size)
        WsFraming.maskCopy(once, 0, twice, 0, data.size, key, 0)
        assertArrayEquals(data, twice)
    }

    @Test
    fun headersUseTheShortestLengthForm() {
        val out = ByteArray(WsFraming.MAX_CLIENT_HEADER)
        assertEquals(6, WsFraming.writeClientHeader(out, 0, WsOp.BINARY, 125, 0))
        assertEquals(8, WsFraming.writeClientHeader(out, 0, WsOp.BINARY, 126, 0))
        WsFraming.writeClientHeader(out, 0, WsOp.BINARY, 128, 0)
        assertEquals("82fe0080", Hex.encode(out.copyOf(4)))
        assertEquals(8, WsFraming.writeClientHeader(out, 0, WsOp.BINARY, 65_535, 0))
        assertEquals(14, WsFraming.writeClientHeader(out, 0, WsOp.BINARY, 65_536, 0))
        assertEquals("82ff0000000000010000", Hex.encode(out.copyOf(10)))
    }

    @Test
    fun hostileFramesAreRefusedWithTheirReason() {
        fun refused(hex: String, max: Int = 1 shl 20): String = assertThrows(WsProtocolException::class.java) { reader(hex, max).next() }.message!!
        assertTrue(refused("818548656c6c6f0000").contains("masked"))
        assertTrue(refused("c10548656c6c6f").contains("reserved"))
        assertTrue(refused("830548656c6c6f").contains("opcode 3"))
        assertTrue(refused("8b00").contains("opcode 11"))
        assertTrue(refused("0900").contains("fragmented control"))
        assertTrue(refused("887e007e" + "00".repeat(126)).contains("control frame of 126"))
        assertTrue(refused("800548656c6c6f").contains("continuation"))
        assertTrue(refused("0103486565" + "8203616263").contains("inside a fragmented"))
        // Lengths: the 64-bit form with its top bit set, and past the message limit, refused
        // before a byte of payload is read or allocated.
        assertTrue(refused("827f8000000000000000").contains("top bit"))
        assertTrue(refused("827f7fffffffffffffff").contains("over"))
        assertTrue(refused("827e0401", max = 1024).contains("over 1024"))
        // Fragments that together pass the limit.
        assertTrue(refused("027e0300" + "00".repeat(0x300) + "807e0300", max = 1024).contains("over 1024"))
    }

    @Test
    fun truncatedInputEndsWithEof() {
        for (hex in listOf("", "82", "827e01", "827f00000000", "820548656c", "010348656c")) {
            assertThrows(hex, EOFException::class.java) { reader(hex).next() }
        }
    }

    @Test
    fun theAcceptKeyIsTheRfcsExample() {
        // RFC 6455 §1.3.
        assertEquals("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", WsFraming.acceptFor("dGhlIHNhbXBsZSBub25jZQ=="))
    }

    /**
     * tests/vectors/websocket.json (shared with the Rust server): which Sec-WebSocket-Extensions
     * values name the unmasked-frames extension, and the node's frames with and without masking
     * as the writer produces them.
     */
    @Test
    fun theSharedWebSocketVectorsHold() {
        val v = Vectors.load("websocket.json")
        assertEquals(WsFraming.UNMASKED, v["extension"])
        for (o in Case.listOf(v, "offers")) {
            assertEquals(o.str("value"), o.bool("names_unmasked"), WsFraming.namesUnmasked(o.str("value")))
        }
        val frames = Case.listOf(v, "node_frames")
        assertTrue(frames.size >= 6)
        for (f in frames) {
            val payload = Hex.decode(f.str("payload"))
            val key = f.optStr("key")?.let { java.lang.Long.parseLong(it, 16).toInt() }
            val out = ByteArray(WsFraming.MAX_CLIENT_HEADER + payload.size)
            val h = WsFraming.writeClientHeader(out, 0, f.int("op"), payload.size, key)
            if (key != null) WsFraming.maskCopy(payload, 0, out, h, payload.size, key, 0) else System.arraycopy(payload, 0, out, h, payload.size)
            assertEquals(f.name, f.str("hex"), Hex.encode(out.copyOf(h + payload.size)))
        }
    }

    @Test
    fun theUpgradeAnswerMayChooseOnlyTheOfferedExtension() {
        fun answer(ext: String?) =
            UpgradeResponse(
                101,
                "101 Switching Protocols",
                mapOf(
                    "upgrade" to listOf("websocket"),
                    "connection" to listOf("Upgrade"),
                    "sec-websocket-accept" to listOf(WsFraming.acceptFor("k")),
                ) + (ext?.let { mapOf("sec-websocket-extensions" to listOf(it)) } ?: emptyMap()),
            )
        assertTrue("offered and echoed", answer("x-traffix-unmasked").check("k", offeredUnmasked = true))
        assertFalse("offered, not echoed: the node keeps masking", answer(null).check("k", offeredUnmasked = true))
        assertFalse(answer(null).check("k", offeredUnmasked = false))
        for ((ext, offered) in listOf("x-traffix-unmasked" to false, "permessage-deflate" to true, "x-traffix-unmasked, permessage-deflate" to true)) {
            val e = assertThrows(java.net.ProtocolException::class.java) { answer(ext).check("k", offered) }
            assertTrue(e.message!!, e.message!!.contains("did not offer"))
        }
    }

    /** The writer's output, masked and unmasked, reads back as the messages sent, in order. */
    @Test
    fun theWriterFramesMaskedAndUnmaskedBatchesThatReadBack() {
        val rnd = Random(7)
        val messages = listOf(0, 1, 125, 126, 65_535, 65_536, 200_000, 3).map { n -> ByteArray(n).also { rnd.nextBytes(it) } }
        for (unmasked in listOf(false, true)) {
            val sink = java.io.ByteArrayOutputStream()
            val w = SocketTransport.FrameWriter(sink, unmasked)
            for (m in messages) w.frame(WsOp.BINARY, m)
            w.flush()
            val wire = sink.toByteArray()
            // Unmask what a node sent, then read it as the server's frames are read.
            val plain = java.io.ByteArrayOutputStream()
            var p = 0
            while (p < wire.size) {
                val b1 = wire[p + 1].toInt() and 0xff
                assertEquals("mask bit", !unmasked, b1 and 0x80 != 0)
                var len = (b1 and 0x7f).toLong()
                var h = 2
                if (len == 126L) {
                    len = java.nio.ByteBuffer.wrap(wire, p + 2, 2).short.toLong() and 0xffff
                    h = 4
                } else if (len == 127L) {
                    len = java.nio.ByteBuffer.wrap(wire, p + 2, 8).long
                    h = 10
                }
                plain.write(wire[p].toInt())
                plain.write(b1 and 0x7f)
                plain.write(wire, p + 2, h - 2)
                val key = if (unmasked) null else wire.copyOfRange(p + h, p + h + 4)
                val body = p + h + (if (unmasked) 0 else 4)
                for (i in 0 until len.toInt()) plain.write(wire[body + i].toInt() xor (key?.get(i % 4)?.toInt() ?: 0))
                p = body + len.toInt()
            }
            val r = reader(plain.toByteArray(), max = 1 shl 20)
            for (m in messages) assertArrayEquals(m, r.next().payload)
            assertThrows(EOFException::class.java) { r.next() }
        }
    }
}
