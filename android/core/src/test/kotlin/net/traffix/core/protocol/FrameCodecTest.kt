package net.traffix.core.protocol

import java.util.Random
import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.testing.Case
import net.traffix.core.testing.Vectors
import net.traffix.core.util.Bytes
import net.traffix.core.util.Hex
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/**
 * What the vectors do not pin down: the decoder survives any input (seeded random bytes,
 * frame-like noise, every prefix and single-byte mutation of every vector), and decode inverts
 * encode for randomly built frames of every type. Seeds are fixed so a failure reproduces.
 */
class FrameCodecTest {
    private val vectorFrames: List<ByteArray> =
        Case.listOf(Vectors.load("frames.json"), "frames").map { Hex.decode(it.str("hex")) }

    /** Decodes and checks the result is consistent; any exception fails the test with the input. */
    private fun decodeSafely(bytes: ByteArray): DecodeResult {
        val r =
            try {
                FrameCodec.decode(bytes)
            } catch (e: Throwable) {
                throw AssertionError("decode threw on ${Hex.encode(bytes.copyOf(minOf(bytes.size, 80)))}", e)
            }
        when (r) {
            is DecodeResult.Ok -> {
                assertTrue(bytes.size in HEADER_LEN..MAX_FRAME_LEN)
                // decode → encode → decode is stable (the encoder may normalise: unknown tags
                // dropped, flags cleared, messages re-cut).
                assertEquals(r, FrameCodec.decode(FrameCodec.encode(r.frame)))
            }
            is DecodeResult.Err -> assertTrue(r.error.code in DecodeError.CODES)
        }
        return r
    }

    @Test
    fun decodeNeverThrowsOnRandomBytes() {
        val rnd = Random(0x7261ff1c)
        repeat(20_000) {
            val len = if (rnd.nextInt(50) == 0) rnd.nextInt(70 * 1024) else rnd.nextInt(300)
            decodeSafely(ByteArray(len).also { rnd.nextBytes(it) })
        }
    }

    @Test
    fun decodeNeverThrowsOnFrameLikeNoise() {
        val rnd = Random(42)
        val types = intArrayOf(1, 2, 3, 4, 5, 6, 7, 8, 9, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15)
        var ok = 0
        repeat(50_000) {
            val body = java.io.ByteArrayOutputStream()
            if (rnd.nextBoolean()) {
                // A well-formed TLV sequence, sometimes cut.
                repeat(rnd.nextInt(12)) {
                    val v = ByteArray(rnd.nextInt(40)).also { b -> rnd.nextBytes(b) }
                    body.write(rnd.nextInt(16))
                    body.write(v.size ushr 8)
                    body.write(v.size)
                    body.write(v)
                }
            } else {
                body.write(ByteArray(rnd.nextInt(300)).also { rnd.nextBytes(it) })
            }
            var b = body.toByteArray()
            if (b.isNotEmpty() && rnd.nextInt(3) == 0) b = b.copyOf(rnd.nextInt(b.size))
            val stream = when (rnd.nextInt(3)) {
                0 -> 0
                1 -> 1
                else -> rnd.nextInt()
            }
            val msg = byteArrayOf(
                types[rnd.nextInt(types.size)].toByte(), rnd.nextInt(256).toByte(),
                (stream ushr 24).toByte(), (stream ushr 16).toByte(), (stream ushr 8).toByte(), stream.toByte(),
            ) + b
            if (decodeSafely(msg) is DecodeResult.Ok) ok++
        }
        assertTrue("the noise should reach the frame decoders ($ok decoded)", ok > 1000)
    }

    @Test
    fun everyPrefixAndMutationOfEveryVectorDecodesWithoutThrowing() {
        val rnd = Random(7)
        for (wire in vectorFrames) {
            for (n in 0..wire.size) decodeSafely(wire.copyOf(n))
            for (i in wire.indices) {
                repeat(4) {
                    val m = wire.copyOf()
                    m[i] = (m[i].toInt() xor (1 shl rnd.nextInt(8))).toByte()
                    decodeSafely(m)
                }
            }
        }
    }

    @Test
    fun decodeInvertsEncodeForRandomFrames() {
        val rnd = Random(1234)
        val seen = HashSet<String>()
        repeat(20_000) {
            val frame = randomFrame(rnd)
            seen.add(frame.name)
            val wire = FrameCodec.encode(frame)
            assertEquals(frame.toString(), DecodeResult.Ok(frame), FrameCodec.decode(wire))
        }
        assertEquals(FrameVectorsTest.FRAME_TYPES.toSet(), seen)
    }

    @Test
    fun unknownTlvFieldsAreSkippedAndRepeatsRejected() {
        var b = FrameCodec.encode(Frame.HeartbeatAck(9))
        b += byteArrayOf(200.toByte(), 0, 2, 0xaa.toByte(), 0xbb.toByte())
        assertEquals(DecodeResult.Ok(Frame.HeartbeatAck(9)), FrameCodec.decode(b))
        b += byteArrayOf(200.toByte(), 0, 1, 0xcc.toByte())
        assertEquals("an unknown tag may repeat", DecodeResult.Ok(Frame.HeartbeatAck(9)), FrameCodec.decode(b))
        b += byteArrayOf(1, 0, 4, 0, 0, 0, 1)
        assertEquals(DecodeResult.Err(DecodeError.RepeatedField("HEARTBEAT_ACK", 1)), FrameCodec.decode(b))
    }

    @Test
    fun heartbeatAckCarriesTodaysCountAndRejectsMalformedFields() {
        val full = Frame.HeartbeatAck(7, 1_767_225_615_000, 3_010_422, -1, "€€€€€x")
        assertEquals("u64 earnings carry all 64 bits", DecodeResult.Ok(full), FrameCodec.decode(FrameCodec.encode(full)))
        val seqOnly = FrameCodec.encode(Frame.HeartbeatAck(1))
        fun with(vararg field: Int) = FrameCodec.decode(seqOnly + ByteArray(field.size) { field[it].toByte() })
        for (tag in intArrayOf(3, 4)) {
            for (len in intArrayOf(0, 4, 9)) {
                assertEquals(
                    DecodeResult.Err(DecodeError.FieldLength("HEARTBEAT_ACK", tag, len, 8)),
                    with(tag, 0, len, *IntArray(len)),
                )
            }
        }
        val long = with(5, 0, 17, *IntArray(17) { 'A'.code + it })
        assertTrue("$long", long is DecodeResult.Err && long.error is DecodeError.BadField && long.error.message.contains("16 bytes"))
        assertEquals(DecodeResult.Err(DecodeError.BadField("HEARTBEAT_ACK", 5, "text is not UTF-8")), with(5, 0, 2, 0xc3, 0x28))
        assertEquals(DecodeResult.Ok(Frame.HeartbeatAck(1, currency = "")), with(5, 0, 0))
    }

    @Test
    fun messagesAreCutToTheLimitOnACharacterBoundary() {
        val long = "é".repeat(600) // 1,200 bytes of UTF-8
        val wire = FrameCodec.encode(Frame.Reset(3, ResetReason.CANCEL, long))
        assertEquals(HEADER_LEN + 1 + 1024, wire.size)
        val back = (FrameCodec.decode(wire) as DecodeResult.Ok).frame as Frame.Reset
        assertEquals("é".repeat(512), back.message)
        // Invalid UTF-8 from a peer is replaced, not refused: these messages are for logs.
        val bad = byteArrayOf(0x12, 0, 0, 0, 0, 3, 2, 'o'.code.toByte(), 0xff.toByte(), 'k'.code.toByte())
        val err = (FrameCodec.decode(bad) as DecodeResult.Ok).frame as Frame.OpenErr
        assertEquals(OpenErrReason.DNS_FAILED, err.reason)
        assertEquals("o\uFFFDk", err.message)
    }

    @Test
    fun unknownCodesReadAsTheirFallbacks() {
        fun decoded(hex: String) = (FrameCodec.decode(Hex.decode(hex)) as DecodeResult.Ok).frame
        assertEquals(Frame.Error(ErrorCode.INTERNAL, ""), decoded("0900000000000100020063"))
        assertEquals(Frame.OpenErr(1, OpenErrReason.INTERNAL, ""), decoded("12000000000163"))
        assertEquals(Frame.Reset(1, ResetReason.INTERNAL, ""), decoded("15000000000163"))
        assertEquals(true, (decoded("060000000000010004000000010200010004000102") as Frame.Heartbeat).charging)
    }

    @Test
    fun constructorsRejectValuesThatDoNotFitTheWire() {
        val nonce = Bytes.of(ByteArray(NONCE_LEN))
        val bad: List<() -> Any> = listOf(
            { Frame.Hello(256, 1) },
            { Frame.Hello(1, 1, deviceId = Bytes.of(ByteArray(15))) },
            { Frame.Challenge(nonce = Bytes.of(ByteArray(31))) },
            { Frame.HeartbeatAck(-1) },
            { Frame.HeartbeatAck(1L shl 32) },
            { Frame.HeartbeatAck(1, currency = "€€€€€xy") },
            { Frame.Data(0, true, Bytes.EMPTY) },
            { Frame.Data(1, false, Bytes.EMPTY) },
            { Frame.Data(1, false, Bytes.of(ByteArray(MAX_DATA_LEN + 1))) },
            { Frame.Open(1, 0, Target.Domain("", 80)) },
            { Frame.Open(1, 0, Target.Domain("a".repeat(254), 80)) },
            { Frame.OpenOk(1, 0, SocketAddr(IpAddr.V4(0), 0)) },
            { Frame.Window(-1, 1) },
            { Frame.Drain(deadlineS = 70_000) },
        )
        for ((i, f) in bad.withIndex()) {
            try {
                f()
                fail("case $i was accepted")
            } catch (expected: IllegalArgumentException) {
            }
        }
        // A PAIR too large for one frame is the caller's bug, refused rather than cut.
        val huge = Frame.Pair("c", KeyAlg.ED25519, Bytes.EMPTY, nonce, Bytes.EMPTY, attestation = List(3) { Bytes.of(ByteArray(30_000)) })
        try {
            FrameCodec.encode(huge)
            fail("oversized PAIR encoded")
        } catch (expected: IllegalArgumentException) {
        }
    }

    // -----------------------------------------------------------------------------------------

    private fun Random.bytes(n: Int) = Bytes.of(ByteArray(n).also { nextBytes(it) })

    private fun Random.u32() = nextLong() and U32_MAX

    private fun Random.stream() = 1 + (nextLong() and U32_MAX) % U32_MAX

    private fun Random.text(max: Int): String {
        val alphabet = "abcXYZ019 -_.:/é€😀"
        val sb = StringBuilder()
        repeat(nextInt(max + 1)) {
            val start = nextInt(alphabet.length)
            // Keep the surrogate pair of the emoji together.
            if (Character.isLowSurrogate(alphabet[start])) return@repeat
            sb.append(alphabet[start])
            if (Character.isHighSurrogate(alphabet[start])) sb.append(alphabet[start + 1])
        }
        return sb.toString()
    }

    private fun <T> Random.maybe(v: () -> T): T? = if (nextBoolean()) v() else null

    private fun Random.socketAddr(): SocketAddr =
        if (nextBoolean()) {
            SocketAddr(IpAddr.V4(nextInt()), nextInt(65536))
        } else {
            SocketAddr(IpAddr.V6(nextLong(), nextLong()), nextInt(65536))
        }

    private fun randomFrame(r: Random): Frame =
        when (r.nextInt(19)) {
            0 -> Frame.Hello(r.nextInt(256), r.nextInt(256), r.maybe { r.bytes(16) }, r.maybe { r.text(64) },
                r.maybe { r.u32() }, r.maybe { r.u32() }, r.nextBoolean())
            1 -> Frame.Challenge(r.maybe { r.nextInt(256) }, r.bytes(32), r.maybe { r.nextLong() })
            2 -> Frame.Proof(r.bytes(32), r.bytes(r.nextInt(80)))
            3 -> Frame.Pair(
                r.text(20), if (r.nextBoolean()) KeyAlg.ED25519 else KeyAlg.ECDSA_P256, r.bytes(r.nextInt(70)),
                r.bytes(32), r.bytes(r.nextInt(80)), r.maybe { r.text(30) }, r.maybe { r.text(30) }, r.maybe { r.text(10) },
                List(r.nextInt(4)) { r.bytes(r.nextInt(60)) },
            )
            4 -> Frame.Welcome(r.bytes(16), IpAddr.V4(r.nextInt()), r.nextInt(65536), r.u32(), r.u32(), r.u32(),
                r.nextInt(65536), r.u32())
            5 -> Frame.Heartbeat(
                r.u32(), NodeState.entries[r.nextInt(3)], r.maybe { r.nextInt(101) }, r.maybe { r.nextBoolean() },
                NetworkType.entries[r.nextInt(4)], r.maybe { r.nextLong() }, r.maybe { r.nextLong() }, r.maybe { r.u32() },
                r.maybe { r.nextLong() }, r.maybe { r.nextLong() }, r.maybe { r.u32() }, r.maybe { r.nextLong() },
            )
            6 -> Frame.HeartbeatAck(r.u32(), r.maybe { r.nextLong() }, r.maybe { r.nextLong() }, r.maybe { r.nextLong() },
                r.maybe { r.text(4) })
            7 -> Frame.Drain(r.maybe { r.text(50) }, r.maybe { r.nextInt(65536) })
            8 -> Frame.Error(ErrorCode.entries[r.nextInt(ErrorCode.entries.size)], r.text(100))
            9 -> Frame.Open(r.stream(), r.u32(),
                if (r.nextBoolean()) Target.Ip(r.socketAddr()) else Target.Domain("x" + r.text(60), r.nextInt(65536)))
            10 -> Frame.OpenOk(r.stream(), r.u32(), r.maybe { r.socketAddr() }?.takeIf { it.port != 0 || !it.ip.isUnspecified })
            11 -> Frame.OpenErr(r.stream(), OpenErrReason.entries[r.nextInt(9)], r.text(100))
            12 -> {
                val fin = r.nextBoolean()
                Frame.Data(r.stream(), fin, r.bytes(r.nextInt(2000) + if (fin) 0 else 1))
            }
            13 -> Frame.Window(r.u32(), r.u32())
            14 -> Frame.StatsRequest(r.u32(), r.nextInt(65536), r.nextInt(65536))
            15 -> {
                fun entries(max: Int) = List(r.nextInt(max + 1)) { StatsEntry(r.u32(), r.nextLong(), r.nextLong()) }
                Frame.Stats(
                    r.u32(), StatsStatus.entries[r.nextInt(3)], r.maybe { r.text(4) }, r.maybe { r.u32() },
                    entries(MAX_STATS_DAYS), entries(MAX_STATS_MONTHS), r.maybe { r.nextInt(65536) },
                )
            }
            16 -> Frame.Unpair(r.u32(), r.maybe { r.text(50) })
            17 -> Frame.Unpaired(r.u32())
            else -> Frame.Reset(r.stream(), ResetReason.entries[r.nextInt(7)], r.text(100))
        }
}
