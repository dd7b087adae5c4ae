package net.traffix.core.protocol

import java.io.ByteArrayOutputStream
import java.nio.ByteBuffer
import java.nio.charset.CharacterCodingException
import java.nio.charset.CodingErrorAction
import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.util.Bytes

/**
 * Encodes and decodes the frames of docs/protocol.md, one WebSocket binary message each.
 *
 * Pure: no I/O, no clock, no state. [decode] never throws for any input: whatever a peer sends
 * comes back as a [DecodeResult], with a [DecodeError] naming the violation. Checks run in the
 * order of the reference implementation (src/tunnel/protocol.rs): length, then type, then
 * stream id, then body, and within a body field by field, so both name the same error.
 *
 * The encoder reproduces the reference encoder byte for byte: TLV fields in ascending tag
 * order, each once (attestation entries in order), HEARTBEAT network, ERROR message and
 * STATS_REQUEST days and months always written, HELLO session (tag 16) only when control-only,
 * no flags but FIN, OPEN_OK without a peer as `0.0.0.0` port 0.
 */
object FrameCodec {
    private object Kind {
        const val HELLO = 0x01
        const val CHALLENGE = 0x02
        const val PROOF = 0x03
        const val PAIR = 0x04
        const val WELCOME = 0x05
        const val HEARTBEAT = 0x06
        const val HEARTBEAT_ACK = 0x07
        const val DRAIN = 0x08
        const val ERROR = 0x09
        const val STATS_REQUEST = 0x0a
        const val STATS = 0x0b
        const val UNPAIR = 0x0c
        const val UNPAIRED = 0x0d
        const val OPEN = 0x10
        const val OPEN_OK = 0x11
        const val OPEN_ERR = 0x12
        const val DATA = 0x13
        const val WINDOW = 0x14
        const val RESET = 0x15
    }

    private const val FLAG_FIN = 0x01

    /** OPEN flag: a watchdog probe to the server's own probe endpoint (docs/protocol.md). */
    private const val FLAG_PROBE = 0x02
    private const val ATYP_IPV4 = 1
    private const val ATYP_DOMAIN = 3
    private const val ATYP_IPV6 = 4

    // ---------------------------------------------------------------------------------------
    // Encoding

    /**
     * The frame as one WebSocket message.
     *
     * @throws IllegalArgumentException if the frame would exceed [MAX_FRAME_LEN] bytes or one
     *   TLV field 65 535 bytes (only possible with oversized PAIR or text fields: a caller bug).
     */
    fun encode(frame: Frame): ByteArray {
        val w = Writer(64)
        when (frame) {
            is Frame.Hello -> {
                w.header(Kind.HELLO, 0, 0)
                w.tlvU8(1, frame.minVersion)
                w.tlvU8(2, frame.maxVersion)
                frame.deviceId?.let { w.tlv(3, it.toByteArray()) }
                frame.agent?.let { w.tlvText(4, it) }
                frame.maxStreams?.let { w.tlvU32(5, it) }
                frame.maxInflight?.let { w.tlvU32(6, it) }
                if (frame.controlOnly) w.tlvU8(16, 1)
            }
            is Frame.Challenge -> {
                w.header(Kind.CHALLENGE, 0, 0)
                frame.version?.let { w.tlvU8(1, it) }
                w.tlv(2, frame.nonce.toByteArray())
                frame.serverTimeMs?.let { w.tlvU64(3, it) }
            }
            is Frame.Proof -> {
                w.header(Kind.PROOF, 0, 0)
                w.tlv(1, frame.nonce.toByteArray())
                w.tlv(2, frame.signature.toByteArray())
            }
            is Frame.Pair -> {
                w.header(Kind.PAIR, 0, 0)
                w.tlvText(1, frame.code)
                w.tlvU8(2, frame.keyAlg.wire)
                w.tlv(3, frame.publicKey.toByteArray())
                w.tlv(4, frame.nonce.toByteArray())
                w.tlv(5, frame.signature.toByteArray())
                frame.model?.let { w.tlvText(6, it) }
                frame.os?.let { w.tlvText(7, it) }
                frame.appVersion?.let { w.tlvText(8, it) }
                for (cert in frame.attestation) w.tlv(9, cert.toByteArray())
                for (hint in frame.hints) w.tlvText(10, hint)
            }
            is Frame.Welcome -> {
                w.header(Kind.WELCOME, 0, 0)
                w.tlv(1, frame.deviceId.toByteArray())
                w.tlv(2, frame.vip.toByteArray())
                w.tlvU16(3, frame.heartbeatIntervalS)
                w.tlvU32(4, frame.maxStreams)
                w.tlvU32(5, frame.initialWindow)
                w.tlvU32(6, frame.maxFrame)
                w.tlvU16(7, frame.challengeIntervalS)
                w.tlvU32(8, frame.maxInflight)
                frame.idleHeartbeatIntervalS?.let { w.tlvU16(9, it) }
            }
            is Frame.Heartbeat -> {
                w.header(Kind.HEARTBEAT, 0, 0)
                w.tlvU32(1, frame.seq)
                w.tlvU8(2, frame.state.wire)
                frame.batteryPct?.let { w.tlvU8(3, it) }
                frame.charging?.let { w.tlvU8(4, if (it) 1 else 0) }
                w.tlvU8(5, frame.network.wire)
                frame.bytesToday?.let { w.tlvU64(6, it) }
                frame.bytesMonth?.let { w.tlvU64(7, it) }
                frame.maxStreams?.let { w.tlvU32(8, it) }
                frame.dailyCap?.let { w.tlvU64(9, it) }
                frame.monthlyCap?.let { w.tlvU64(10, it) }
                frame.activeStreams?.let { w.tlvU32(11, it) }
                frame.uptimeS?.let { w.tlvU64(12, it) }
                frame.pauseReason?.let { w.tlvU8(13, it.wire) }
                frame.rttMs?.let { w.tlvU32(14, it) }
            }
            is Frame.HeartbeatAck -> {
                w.header(Kind.HEARTBEAT_ACK, 0, 0)
                w.tlvU32(1, frame.seq)
                frame.serverTimeMs?.let { w.tlvU64(2, it) }
                frame.bytesToday?.let { w.tlvU64(3, it) }
                frame.earnedToday?.let { w.tlvU64(4, it) }
                frame.currency?.let { w.tlvText(5, it) }
            }
            is Frame.Drain -> {
                w.header(Kind.DRAIN, 0, 0)
                frame.reason?.let { w.tlvText(1, it) }
                frame.deadlineS?.let { w.tlvU16(2, it) }
            }
            is Frame.Error -> {
                w.header(Kind.ERROR, 0, 0)
                w.tlvU16(1, frame.code.wire)
                w.tlvText(2, frame.message)
            }
            is Frame.StatsRequest -> {
                w.header(Kind.STATS_REQUEST, 0, 0)
                w.tlvU32(1, frame.requestId)
                w.tlvU16(2, frame.days)
                w.tlvU16(3, frame.months)
            }
            is Frame.Stats -> {
                w.header(Kind.STATS, 0, 0)
                w.tlvU32(1, frame.requestId)
                w.tlvU8(2, frame.status.wire)
                frame.currency?.let { w.tlvText(3, it) }
                frame.today?.let { w.tlvU32(4, it) }
                for (e in frame.days) w.tlv(5, entryBytes(e))
                for (e in frame.months) w.tlv(6, entryBytes(e))
                frame.retryAfterS?.let { w.tlvU16(7, it) }
            }
            is Frame.Unpair -> {
                w.header(Kind.UNPAIR, 0, 0)
                w.tlvU32(1, frame.requestId)
                frame.reason?.let { w.tlvText(2, it) }
            }
            is Frame.Unpaired -> {
                w.header(Kind.UNPAIRED, 0, 0)
                w.tlvU32(1, frame.requestId)
            }
            is Frame.Open -> {
                w.header(Kind.OPEN, if (frame.probe) FLAG_PROBE else 0, frame.stream)
                w.u32(frame.window)
                w.target(frame.target)
            }
            is Frame.OpenOk -> {
                w.header(Kind.OPEN_OK, 0, frame.stream)
                w.u32(frame.window)
                w.target(Target.Ip(frame.peer ?: SocketAddr(IpAddr.V4(0), 0)))
            }
            is Frame.OpenErr -> {
                w.header(Kind.OPEN_ERR, 0, frame.stream)
                w.u8(frame.reason.wire)
                w.bytes(boundedUtf8(frame.message))
            }
            is Frame.Data -> return encodeData(frame)
            is Frame.Window -> {
                w.header(Kind.WINDOW, 0, frame.stream)
                w.u32(frame.increment)
            }
            is Frame.Reset -> {
                w.header(Kind.RESET, 0, frame.stream)
                w.u8(frame.reason.wire)
                w.bytes(boundedUtf8(frame.message))
            }
        }
        val out = w.toByteArray()
        require(out.size <= MAX_FRAME_LEN) { "${frame.name} frame of ${out.size} bytes exceeds $MAX_FRAME_LEN" }
        return out
    }

    /** A STATS entry's 20 bytes: start_day u32, bytes u64, earned u64. */
    private fun entryBytes(e: StatsEntry): ByteArray {
        val b = ByteArray(STATS_ENTRY_LEN)
        for (i in 0 until 4) b[i] = (e.startDay ushr (24 - 8 * i)).toByte()
        for (i in 0 until 8) {
            b[4 + i] = (e.bytes ushr (56 - 8 * i)).toByte()
            b[12 + i] = (e.earned ushr (56 - 8 * i)).toByte()
        }
        return b
    }

    /** The UTF-8 of [text] cut to [MAX_MESSAGE_LEN] bytes without splitting a character. */
    private fun boundedUtf8(text: String): ByteArray {
        val b = text.toByteArray(Charsets.UTF_8)
        if (b.size <= MAX_MESSAGE_LEN) return b
        var end = MAX_MESSAGE_LEN
        while (end > 0 && (b[end].toInt() and 0xc0) == 0x80) end--
        return b.copyOf(end)
    }

    /** DATA, the hot path: one exact array, the payload copied once. */
    private fun encodeData(frame: Frame.Data): ByteArray {
        val out = ByteArray(HEADER_LEN + frame.payload.size)
        out[0] = Kind.DATA.toByte()
        out[1] = (if (frame.fin) FLAG_FIN else 0).toByte()
        val id = frame.stream
        out[2] = (id ushr 24).toByte()
        out[3] = (id ushr 16).toByte()
        out[4] = (id ushr 8).toByte()
        out[5] = id.toByte()
        frame.payload.copyInto(out, HEADER_LEN)
        return out
    }

    private class Writer(capacity: Int) {
        private val out = ByteArrayOutputStream(capacity)

        fun toByteArray(): ByteArray = out.toByteArray()

        fun u8(v: Int) = out.write(v and 0xff)

        fun u16(v: Int) {
            u8(v ushr 8)
            u8(v)
        }

        fun u32(v: Long) {
            u16((v ushr 16).toInt() and 0xffff)
            u16(v.toInt() and 0xffff)
        }

        fun u64(v: Long) {
            u32(v ushr 32 and U32_MAX)
            u32(v and U32_MAX)
        }

        fun bytes(b: ByteArray) = out.write(b, 0, b.size)

        fun bytes(b: Bytes) = b.writeTo(out)

        fun header(kind: Int, flags: Int, stream: Long) {
            u8(kind)
            u8(flags)
            u32(stream)
        }

        fun tlv(tag: Int, value: ByteArray) {
            require(value.size <= 0xffff) { "TLV field $tag of ${value.size} bytes" }
            u8(tag)
            u16(value.size)
            bytes(value)
        }

        fun tlvText(tag: Int, v: String) = tlv(tag, v.toByteArray(Charsets.UTF_8))

        fun tlvU8(tag: Int, v: Int) = tlv(tag, byteArrayOf(v.toByte()))

        fun tlvU16(tag: Int, v: Int) = tlv(tag, byteArrayOf((v ushr 8).toByte(), v.toByte()))

        fun tlvU32(tag: Int, v: Long) =
            tlv(tag, byteArrayOf((v ushr 24).toByte(), (v ushr 16).toByte(), (v ushr 8).toByte(), v.toByte()))

        fun tlvU64(tag: Int, v: Long) = tlv(tag, ByteArray(8) { i -> (v ushr (56 - 8 * i)).toByte() })

        fun target(t: Target) {
            when (t) {
                is Target.Ip -> {
                    u16(t.addr.port)
                    u8(if (t.addr.ip is IpAddr.V4) ATYP_IPV4 else ATYP_IPV6)
                    bytes(t.addr.ip.toByteArray())
                }
                is Target.Domain -> {
                    val name = t.name.toByteArray(Charsets.UTF_8)
                    u16(t.port)
                    u8(ATYP_DOMAIN)
                    u8(name.size)
                    bytes(name)
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Decoding

    /** Decodes one WebSocket binary message. Never throws. */
    fun decode(msg: ByteArray): DecodeResult =
        try {
            DecodeResult.Ok(decodeOrThrow(msg))
        } catch (e: Violation) {
            DecodeResult.Err(e.error)
        }

    /** Internal control flow only; stackless, as it is thrown for every bad frame a peer sends. */
    private class Violation(val error: DecodeError) : RuntimeException(error.message, null, false, false)

    private fun fail(error: DecodeError): Nothing = throw Violation(error)

    private fun decodeOrThrow(msg: ByteArray): Frame {
        if (msg.size < HEADER_LEN) fail(DecodeError.Short(msg.size))
        if (msg.size > MAX_FRAME_LEN) fail(DecodeError.TooLarge(msg.size))
        val type = msg[0].toInt() and 0xff
        val flags = msg[1].toInt() and 0xff
        val stream = readU32(msg, 2)
        val body = Body(msg, HEADER_LEN)

        fun conn(name: String) {
            if (stream != 0L) fail(DecodeError.NeedsConnectionStream(name))
        }

        fun strm(name: String) {
            if (stream == 0L) fail(DecodeError.NeedsStream(name))
        }

        return when (type) {
            Kind.HELLO -> {
                conn("HELLO")
                val f = Fields.parse("HELLO", body)
                Frame.Hello(
                    minVersion = f.reqU8(1),
                    maxVersion = f.reqU8(2),
                    deviceId = f.optFixed(3, DEVICE_ID_LEN),
                    agent = f.optText(4),
                    maxStreams = f.optU32(5),
                    maxInflight = f.optU32(6),
                    controlOnly =
                    when (f.optU8(16)) {
                        null, 0 -> false
                        1 -> true
                        else -> fail(DecodeError.BadField("HELLO", 16, "unknown session kind"))
                    },
                )
            }
            Kind.CHALLENGE -> {
                conn("CHALLENGE")
                val f = Fields.parse("CHALLENGE", body)
                Frame.Challenge(version = f.optU8(1), nonce = f.reqFixed(2, NONCE_LEN), serverTimeMs = f.optU64(3))
            }
            Kind.PROOF -> {
                conn("PROOF")
                val f = Fields.parse("PROOF", body)
                Frame.Proof(nonce = f.reqFixed(1, NONCE_LEN), signature = f.reqBytes(2))
            }
            Kind.PAIR -> {
                conn("PAIR")
                val f = Fields.parse("PAIR", body)
                val alg = f.reqU8(2)
                Frame.Pair(
                    code = f.reqText(1),
                    keyAlg = KeyAlg.fromWire(alg) ?: fail(DecodeError.BadField("PAIR", 2, "unknown key algorithm")),
                    publicKey = f.reqBytes(3),
                    nonce = f.reqFixed(4, NONCE_LEN),
                    signature = f.reqBytes(5),
                    model = f.optText(6),
                    os = f.optText(7),
                    appVersion = f.optText(8),
                    attestation = f.list(9),
                    hints = f.hints(10),
                )
            }
            Kind.WELCOME -> {
                conn("WELCOME")
                val f = Fields.parse("WELCOME", body)
                Frame.Welcome(
                    deviceId = f.reqFixed(1, DEVICE_ID_LEN),
                    vip = IpAddr.fromBytes(f.reqFixed(2, 4).toByteArray()) as IpAddr.V4,
                    heartbeatIntervalS = f.reqU16(3),
                    maxStreams = f.reqU32(4),
                    initialWindow = f.reqU32(5),
                    maxFrame = f.reqU32(6),
                    challengeIntervalS = f.reqU16(7),
                    maxInflight = f.reqU32(8),
                    idleHeartbeatIntervalS = f.optU16(9),
                )
            }
            Kind.HEARTBEAT -> {
                conn("HEARTBEAT")
                val f = Fields.parse("HEARTBEAT", body)
                val state = f.reqU8(2)
                Frame.Heartbeat(
                    seq = f.reqU32(1),
                    state = NodeState.fromWire(state) ?: fail(DecodeError.BadField("HEARTBEAT", 2, "unknown node state")),
                    batteryPct = f.optU8(3),
                    charging = f.optU8(4)?.let { it != 0 },
                    network = NetworkType.fromWire(f.optU8(5) ?: 0),
                    bytesToday = f.optU64(6),
                    bytesMonth = f.optU64(7),
                    maxStreams = f.optU32(8),
                    dailyCap = f.optU64(9),
                    monthlyCap = f.optU64(10),
                    activeStreams = f.optU32(11),
                    uptimeS = f.optU64(12),
                    pauseReason = f.optU8(13)?.let { PauseCode.fromWire(it) },
                    rttMs = f.optU32(14),
                )
            }
            Kind.HEARTBEAT_ACK -> {
                conn("HEARTBEAT_ACK")
                val f = Fields.parse("HEARTBEAT_ACK", body)
                Frame.HeartbeatAck(
                    seq = f.reqU32(1),
                    serverTimeMs = f.optU64(2),
                    bytesToday = f.optU64(3),
                    earnedToday = f.optU64(4),
                    currency = f.optText(5, MAX_CURRENCY_LEN, "currency is longer than $MAX_CURRENCY_LEN bytes"),
                )
            }
            Kind.DRAIN -> {
                conn("DRAIN")
                val f = Fields.parse("DRAIN", body)
                Frame.Drain(reason = f.optText(1), deadlineS = f.optU16(2))
            }
            Kind.ERROR -> {
                conn("ERROR")
                val f = Fields.parse("ERROR", body)
                Frame.Error(code = ErrorCode.fromWire(f.reqU16(1)), message = f.optText(2) ?: "")
            }
            Kind.STATS_REQUEST -> {
                conn("STATS_REQUEST")
                val f = Fields.parse("STATS_REQUEST", body)
                Frame.StatsRequest(requestId = f.reqU32(1), days = f.optU16(2) ?: 0, months = f.optU16(3) ?: 0)
            }
            Kind.STATS -> {
                conn("STATS")
                val f = Fields.parse("STATS", body)
                Frame.Stats(
                    requestId = f.reqU32(1),
                    status = StatsStatus.fromWire(f.reqU8(2)),
                    currency = f.optText(3, MAX_CURRENCY_LEN, "currency is longer than $MAX_CURRENCY_LEN bytes"),
                    today = f.optU32(4),
                    days = f.entries(5, MAX_STATS_DAYS, "more than $MAX_STATS_DAYS day entries"),
                    months = f.entries(6, MAX_STATS_MONTHS, "more than $MAX_STATS_MONTHS month entries"),
                    retryAfterS = f.optU16(7),
                )
            }
            Kind.UNPAIR -> {
                conn("UNPAIR")
                val f = Fields.parse("UNPAIR", body)
                Frame.Unpair(
                    requestId = f.reqU32(1),
                    reason = f.optText(2, MAX_UNPAIR_REASON_LEN, "reason is longer than $MAX_UNPAIR_REASON_LEN bytes"),
                )
            }
            Kind.UNPAIRED -> {
                conn("UNPAIRED")
                val f = Fields.parse("UNPAIRED", body)
                Frame.Unpaired(requestId = f.reqU32(1))
            }
            Kind.OPEN -> {
                strm("OPEN")
                val (window, target) = readWindowAddr("OPEN", body)
                Frame.Open(stream, window, target, flags and FLAG_PROBE != 0)
            }
            Kind.OPEN_OK -> {
                strm("OPEN_OK")
                val (window, target) = readWindowAddr("OPEN_OK", body)
                val peer =
                    when (target) {
                        is Target.Ip -> target.addr.takeIf { it.port != 0 || !it.ip.isUnspecified }
                        is Target.Domain -> fail(DecodeError.BadAddress("OPEN_OK peer must be an IP"))
                    }
                Frame.OpenOk(stream, window, peer)
            }
            Kind.OPEN_ERR -> {
                strm("OPEN_ERR")
                if (body.size < 1) fail(DecodeError.Truncated("OPEN_ERR", "reason"))
                Frame.OpenErr(stream, OpenErrReason.fromWire(body.u8(0)), boundedText(body, 1))
            }
            Kind.DATA -> {
                strm("DATA")
                val fin = flags and FLAG_FIN != 0
                if (body.size == 0 && !fin) fail(DecodeError.EmptyData)
                Frame.Data(stream, fin, body.slice(0, body.size))
            }
            Kind.WINDOW -> {
                if (body.size < 4) fail(DecodeError.Truncated("WINDOW", "increment"))
                Frame.Window(stream, body.u32(0))
            }
            Kind.RESET -> {
                strm("RESET")
                if (body.size < 1) fail(DecodeError.Truncated("RESET", "reason"))
                Frame.Reset(stream, ResetReason.fromWire(body.u8(0)), boundedText(body, 1))
            }
            else -> fail(DecodeError.UnknownType(type))
        }
    }

    private fun readU32(b: ByteArray, at: Int): Long =
        ((b[at].toLong() and 0xff) shl 24) or ((b[at + 1].toLong() and 0xff) shl 16) or
            ((b[at + 2].toLong() and 0xff) shl 8) or (b[at + 3].toLong() and 0xff)

    /** The frame body: [size] bytes of [msg] from [start]. Offsets below are body-relative. */
    private class Body(val msg: ByteArray, val start: Int) {
        val size: Int get() = msg.size - start

        fun u8(at: Int): Int = msg[start + at].toInt() and 0xff

        fun u16(at: Int): Int = (u8(at) shl 8) or u8(at + 1)

        fun u32(at: Int): Long = readU32(msg, start + at)

        fun slice(from: Int, to: Int): Bytes = Bytes.of(msg, start + from, start + to)
    }

    private fun readWindowAddr(frame: String, body: Body): kotlin.Pair<Long, Target> {
        if (body.size < 7) fail(DecodeError.Truncated(frame, "window, port and address type"))
        val window = body.u32(0)
        val port = body.u16(4)
        val rest = 7
        val target: Target =
            when (body.u8(6)) {
                ATYP_IPV4 -> {
                    if (body.size < rest + 4) fail(DecodeError.Truncated(frame, "IPv4 address"))
                    Target.Ip(SocketAddr(IpAddr.fromBytes(body.slice(rest, rest + 4).toByteArray()), port))
                }
                ATYP_IPV6 -> {
                    if (body.size < rest + 16) fail(DecodeError.Truncated(frame, "IPv6 address"))
                    Target.Ip(SocketAddr(IpAddr.fromBytes(body.slice(rest, rest + 16).toByteArray()), port))
                }
                ATYP_DOMAIN -> {
                    if (body.size < rest + 1) fail(DecodeError.Truncated(frame, "name length"))
                    val n = body.u8(rest)
                    if (n == 0) fail(DecodeError.BadAddress("empty domain name"))
                    if (n > MAX_DOMAIN_LEN) fail(DecodeError.BadAddress("domain name longer than $MAX_DOMAIN_LEN bytes"))
                    if (body.size < rest + 1 + n) fail(DecodeError.Truncated(frame, "name"))
                    val name = strictUtf8(body.msg, body.start + rest + 1, n)
                        ?: fail(DecodeError.BadAddress("domain name is not UTF-8"))
                    Target.Domain(name, port)
                }
                else -> fail(DecodeError.BadAddress("unknown address type"))
            }
        return kotlin.Pair(window, target)
    }

    /** The UTF-8 text at [from] of [len] bytes, or null if it is not valid UTF-8. */
    private fun strictUtf8(b: ByteArray, from: Int, len: Int): String? =
        try {
            Charsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
                .decode(ByteBuffer.wrap(b, from, len))
                .toString()
        } catch (e: CharacterCodingException) {
            null
        }

    /**
     * A peer's free-text message (OPEN_ERR, RESET): the first [MAX_MESSAGE_LEN] bytes, invalid
     * UTF-8 replaced, then cut like the encoder cuts, so decode → encode → decode is stable.
     */
    private fun boundedText(body: Body, from: Int): String {
        val n = minOf(body.size - from, MAX_MESSAGE_LEN)
        val text = Charsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPLACE)
            .onUnmappableCharacter(CodingErrorAction.REPLACE)
            .decode(ByteBuffer.wrap(body.msg, body.start + from, n))
            .toString()
        return String(boundedUtf8(text), Charsets.UTF_8)
    }

    /** The TLV fields of a control body, as (tag, offset, length) into the message. */
    private class Fields private constructor(private val frame: String, private val msg: ByteArray) {
        private val tags = ArrayList<Int>()
        private val offsets = ArrayList<Int>()
        private val lengths = ArrayList<Int>()

        companion object {
            /**
             * Splits a TLV body. Repeats are judged when a field is read: a known scalar field
             * that repeats is a violation, unknown tags (never read) may repeat, lists may repeat.
             */
            fun parse(frame: String, body: Body): Fields {
                val f = Fields(frame, body.msg)
                var at = body.start
                val end = body.msg.size
                while (at < end) {
                    if (end - at < 3) fail(DecodeError.Truncated(frame, "field header"))
                    val tag = body.msg[at].toInt() and 0xff
                    val len = ((body.msg[at + 1].toInt() and 0xff) shl 8) or (body.msg[at + 2].toInt() and 0xff)
                    if (end - at - 3 < len) fail(DecodeError.Truncated(frame, "field value"))
                    f.tags.add(tag)
                    f.offsets.add(at + 3)
                    f.lengths.add(len)
                    at += 3 + len
                }
                return f
            }
        }

        /** Index of the single field [tag], or -1; a repeated scalar field is a violation. */
        private fun find(tag: Int): Int {
            var found = -1
            for (i in tags.indices) {
                if (tags[i] != tag) continue
                if (found >= 0) fail(DecodeError.RepeatedField(frame, tag))
                found = i
            }
            return found
        }

        private fun value(i: Int): Bytes = Bytes.of(msg, offsets[i], offsets[i] + lengths[i])

        fun list(tag: Int): List<Bytes> = tags.indices.filter { tags[it] == tag }.map { value(it) }

        fun optFixed(tag: Int, n: Int): Bytes? {
            val i = find(tag)
            if (i < 0) return null
            if (lengths[i] != n) fail(DecodeError.FieldLength(frame, tag, lengths[i], n))
            return value(i)
        }

        fun reqFixed(tag: Int, n: Int): Bytes = optFixed(tag, n) ?: fail(DecodeError.MissingField(frame, tag))

        private fun optUnsigned(tag: Int, n: Int): Long? {
            val i = find(tag)
            if (i < 0) return null
            if (lengths[i] != n) fail(DecodeError.FieldLength(frame, tag, lengths[i], n))
            var v = 0L
            for (k in 0 until n) v = (v shl 8) or (msg[offsets[i] + k].toLong() and 0xff)
            return v
        }

        fun optU8(tag: Int): Int? = optUnsigned(tag, 1)?.toInt()

        fun reqU8(tag: Int): Int = optU8(tag) ?: fail(DecodeError.MissingField(frame, tag))

        fun optU16(tag: Int): Int? = optUnsigned(tag, 2)?.toInt()

        fun reqU16(tag: Int): Int = optU16(tag) ?: fail(DecodeError.MissingField(frame, tag))

        fun optU32(tag: Int): Long? = optUnsigned(tag, 4)

        fun reqU32(tag: Int): Long = optU32(tag) ?: fail(DecodeError.MissingField(frame, tag))

        fun optU64(tag: Int): Long? = optUnsigned(tag, 8)

        fun reqBytes(tag: Int): Bytes {
            val i = find(tag)
            if (i < 0) fail(DecodeError.MissingField(frame, tag))
            return value(i)
        }

        fun optText(tag: Int): String? {
            val i = find(tag)
            if (i < 0) return null
            return strictUtf8(msg, offsets[i], lengths[i]) ?: fail(DecodeError.BadField(frame, tag, "text is not UTF-8"))
        }

        /** Text of at most [max] bytes; longer is a violation ([why] names the limit). */
        fun optText(tag: Int, max: Int, why: String): String? {
            val i = find(tag)
            if (i >= 0 && lengths[i] > max) fail(DecodeError.BadField(frame, tag, why))
            return optText(tag)
        }

        fun reqText(tag: Int): String = optText(tag) ?: fail(DecodeError.MissingField(frame, tag))

        /** STATS entries of [tag] (a list): each [STATS_ENTRY_LEN] bytes, at most [max] of them. */
        fun entries(tag: Int, max: Int, why: String): List<StatsEntry> {
            val out = ArrayList<StatsEntry>()
            for (i in tags.indices) {
                if (tags[i] != tag) continue
                if (out.size == max) fail(DecodeError.BadField(frame, tag, why))
                if (lengths[i] != STATS_ENTRY_LEN) fail(DecodeError.FieldLength(frame, tag, lengths[i], STATS_ENTRY_LEN))
                var start = 0L
                var bytes = 0L
                var earned = 0L
                val at = offsets[i]
                for (k in 0 until 4) start = (start shl 8) or (msg[at + k].toLong() and 0xff)
                for (k in 0 until 8) {
                    bytes = (bytes shl 8) or (msg[at + 4 + k].toLong() and 0xff)
                    earned = (earned shl 8) or (msg[at + 12 + k].toLong() and 0xff)
                }
                out.add(StatsEntry(start, bytes, earned))
            }
            return out
        }

        /** PAIR's emulator hints: at most [MAX_HINTS] texts of at most [MAX_HINT_LEN] bytes. */
        fun hints(tag: Int): List<String> {
            val idx = tags.indices.filter { tags[it] == tag }
            if (idx.size > MAX_HINTS) fail(DecodeError.BadField(frame, tag, "more than $MAX_HINTS hints"))
            return idx.map { i ->
                if (lengths[i] > MAX_HINT_LEN) fail(DecodeError.BadField(frame, tag, "a hint longer than $MAX_HINT_LEN bytes"))
                strictUtf8(msg, offsets[i], lengths[i]) ?: fail(DecodeError.BadField(frame, tag, "text is not UTF-8"))
            }
        }
    }
}

/** [FrameCodec.encode] as a member-style call. */
fun Frame.encode(): ByteArray = FrameCodec.encode(this)
