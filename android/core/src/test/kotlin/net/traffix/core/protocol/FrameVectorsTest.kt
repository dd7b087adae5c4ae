package net.traffix.core.protocol

import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.testing.Case
import net.traffix.core.testing.SignatureCheck
import net.traffix.core.testing.SoftwareSigner
import net.traffix.core.testing.Vectors
import net.traffix.core.util.Bytes
import net.traffix.core.util.Hex
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/**
 * Runs the golden frames of tests/vectors/frames.json (the file tests/frame_vectors.rs reads)
 * against [FrameCodec]. Every case is checked and all mismatches are reported together.
 */
class FrameVectorsTest {
    private val doc = Vectors.load("frames.json")

    private fun cases(kind: String) = Case.listOf(doc, kind)

    private fun assertNoFailures(failures: List<String>, total: Int) {
        if (failures.isNotEmpty()) fail("${failures.size} of $total cases failed:\n" + failures.joinToString("\n"))
    }

    @Test
    fun framesEncodeAndDecodeAsTheVectorsSay() {
        val frames = cases("frames")
        val failures = ArrayList<String>()
        for (case in frames) {
            val name = case.name
            val want =
                try {
                    build(case)
                } catch (e: Exception) {
                    failures.add("$name: cannot build the frame: $e")
                    continue
                }
            if (want.name != case.str("type")) failures.add("$name: built a ${want.name}")
            val hex = case.str("hex")
            val decodeOnly = case.has("decode_only") && case.bool("decode_only")
            val encoded = Hex.encode(FrameCodec.encode(want))
            if (decodeOnly) {
                if (encoded == hex) failures.add("$name: marked decode_only but encode() reproduces it")
            } else if (encoded != hex) {
                failures.add("$name: encode() gave\n  $encoded\nexpected\n  $hex")
            }
            when (val got = FrameCodec.decode(Hex.decode(hex))) {
                is DecodeResult.Ok ->
                    if (got.frame != want) failures.add("$name: decoded to ${got.frame}, expected $want")
                is DecodeResult.Err -> failures.add("$name: decode failed with ${got.error}")
            }
        }
        assertNoFailures(failures, frames.size)
    }

    @Test
    fun invalidFramesFailWithTheNamedError() {
        val invalid = cases("invalid")
        val failures = ArrayList<String>()
        for (case in invalid) {
            val want = case.str("error")
            if (want !in DecodeError.CODES) failures.add("${case.name}: unknown error name $want")
            when (val got = FrameCodec.decode(invalidBytes(case))) {
                is DecodeResult.Ok -> failures.add("${case.name}: decoded to ${got.frame}, expected $want")
                is DecodeResult.Err ->
                    if (got.error.code != want) failures.add("${case.name}: failed with ${got.error}, expected $want")
            }
        }
        assertNoFailures(failures, invalid.size)
    }

    @Test
    fun vectorsCoverEveryFrameTypeAndError() {
        val types = cases("frames").map { it.str("type") }.toSet()
        assertEquals(FRAME_TYPES.toSet(), types)
        val errors = cases("invalid").map { it.str("error") }.toSet()
        assertEquals(DecodeError.CODES.toSet(), errors)
        assertEquals(PROTOCOL_VERSION.toLong(), doc["protocol_version"])
        val names = listOf("frames", "invalid", "signing").flatMap { k -> cases(k).map { it.name } }
        assertEquals("vector names repeat", names.size, names.toSet().size)
    }

    @Test
    fun frameSizeLimitIsInclusive() {
        val atLimit = Frame.Data(1, false, Bytes.of(ByteArray(MAX_DATA_LEN) { 0xab.toByte() }))
        val wire = FrameCodec.encode(atLimit)
        assertEquals(65_536, wire.size)
        assertEquals(DecodeResult.Ok(atLimit), FrameCodec.decode(wire))
        val over = wire + byteArrayOf(0xab.toByte())
        assertEquals(DecodeResult.Err(DecodeError.TooLarge(65_537)), FrameCodec.decode(over))
    }

    @Test
    fun attestationChallengesMatch() {
        val all = cases("attestation_challenges")
        assertTrue(all.size >= 3)
        for (case in all) {
            val challenge = Handshake.attestationChallenge(Bytes.ofHex(case.str("pin")), case.str("code"))
            assertEquals(case.name, case.str("challenge"), challenge.hex())
        }
    }

    @Test
    fun challengeMessagesAndSignaturesMatch() {
        val signing = cases("signing")
        assertTrue(signing.isNotEmpty())
        for (case in signing) {
            val name = case.name
            val pin = Bytes.ofHex(case.str("pin"))
            val id = Bytes.ofHex(case.str("device_id"))
            val nonce = Bytes.ofHex(case.str("nonce"))
            val msg = Handshake.challengeMessage(pin, id, nonce)
            assertEquals(name, case.str("message"), Hex.encode(msg))
            if (!case.has("signature")) continue
            val alg = KeyAlg.fromWire(case.int("key_alg")) ?: throw AssertionError("$name: bad key_alg")
            val publicKey = Bytes.ofHex(case.str("public_key"))
            val signature = Bytes.ofHex(case.str("signature"))
            assertEquals("$name: device_id is not derived from public_key", id, Handshake.deviceId(alg, publicKey))
            assertTrue(name, SignatureCheck.verify(alg, publicKey, msg, signature))
            val otherNonce = nonce.toByteArray().also { it[0] = (it[0].toInt() xor 1).toByte() }
            val otherMsg = Handshake.challengeMessage(pin, id, Bytes.of(otherNonce))
            assertFalse(name, SignatureCheck.verify(alg, publicKey, otherMsg, signature))
            if (case.has("ed25519_seed")) {
                // Ed25519 is deterministic: the seed reproduces the signature exactly, through
                // the same DeviceSigner interface the agent signs with.
                val signer = SoftwareSigner.ed25519(Bytes.ofHex(case.str("ed25519_seed")), publicKey)
                assertEquals(name, signature, signer.sign(msg))
            }
        }
    }

    @Test
    fun deviceIdsMatch() {
        for (case in cases("device_ids")) {
            val alg = KeyAlg.fromWire(case.int("key_alg")) ?: throw AssertionError("bad key_alg in $case")
            assertEquals(case.toString(), case.str("device_id"), Handshake.deviceId(alg, Bytes.ofHex(case.str("public_key"))).hex())
        }
    }

    @Test
    fun versionNegotiationMatches() {
        for (case in cases("version_negotiation")) {
            val min = case.int("node_min")
            val max = case.int("node_max")
            val got = Handshake.negotiateVersion(min, max)
            val want = case.optLong("version")
            when {
                got is Handshake.Negotiated.Agreed && want != null -> assertEquals(case.toString(), want, got.version.toLong())
                got is Handshake.Negotiated.NoCommonVersion && want == null -> {
                    case.optStr("upgrade")?.let { side ->
                        assertTrue("$case: ${got.message}", got.message.contains("upgrade the $side"))
                        assertTrue("$case: ${got.message}", got.message.contains("$min..$max"))
                    }
                }
                else -> fail("$case: negotiateVersion gave $got")
            }
        }
    }

    companion object {
        val FRAME_TYPES = listOf(
            "HELLO", "CHALLENGE", "PROOF", "PAIR", "WELCOME", "HEARTBEAT", "HEARTBEAT_ACK", "DRAIN", "ERROR",
            "STATS_REQUEST", "STATS", "UNPAIR", "UNPAIRED", "OPEN", "OPEN_OK", "OPEN_ERR", "DATA", "WINDOW", "RESET",
        )

        /** The field names a vector of each type may use (docs/protocol.md; `stream` for stream frames). */
        private fun allowedFields(type: String): Set<String> =
            when (type) {
                "HELLO" -> setOf("min_version", "max_version", "device_id", "agent", "max_streams", "max_inflight", "session")
                "CHALLENGE" -> setOf("version", "nonce", "server_time_ms")
                "PROOF" -> setOf("nonce", "signature")
                "PAIR" -> setOf(
                    "code", "key_alg", "public_key", "nonce", "signature", "model", "os", "app_version", "attestation",
                    "hints",
                )
                "WELCOME" -> setOf(
                    "device_id", "vip", "heartbeat_interval_s", "max_streams", "initial_window", "max_frame",
                    "challenge_interval_s", "max_inflight", "idle_heartbeat_interval_s",
                )
                "HEARTBEAT" -> setOf(
                    "seq", "state", "battery_pct", "charging", "network", "bytes_today", "bytes_month", "max_streams",
                    "daily_cap", "monthly_cap", "active_streams", "uptime_s", "pause_reason", "rtt_ms",
                )
                "HEARTBEAT_ACK" -> setOf("seq", "server_time_ms", "bytes_today", "earned_today", "currency")
                "DRAIN" -> setOf("reason", "deadline_s")
                "ERROR" -> setOf("code", "message")
                "STATS_REQUEST" -> setOf("request_id", "days", "months")
                "STATS" -> setOf("request_id", "status", "currency", "today", "days", "months", "retry_after_s")
                "UNPAIR" -> setOf("request_id", "reason")
                "UNPAIRED" -> setOf("request_id")
                "OPEN" -> setOf("stream", "window", "port", "atyp", "addr", "probe")
                "OPEN_OK" -> setOf("stream", "window", "port", "atyp", "addr")
                "OPEN_ERR", "RESET" -> setOf("stream", "reason", "message")
                "DATA" -> setOf("stream", "fin", "payload")
                "WINDOW" -> setOf("stream", "increment")
                else -> throw AssertionError("unknown frame type $type")
            }

        private fun Case.bytes(key: String): Bytes = Bytes.ofHex(str(key))

        private fun Case.optBytes(key: String): Bytes? = if (has(key)) bytes(key) else null

        /** `port`, `atyp` and `addr` of OPEN / OPEN_OK; the address text must match its atyp. */
        private fun Case.target(): Target {
            val port = int("port")
            val addr = str("addr")
            val ip: IpAddr? =
                when (val atyp = int("atyp")) {
                    1 -> IpAddr.parseV4(addr)
                    4 -> IpAddr.parseV6(addr)
                    3 -> return Target.Domain(addr, port)
                    else -> throw AssertionError("atyp $atyp in a valid vector")
                }
            ip ?: throw AssertionError("addr $addr does not match atyp")
            // The text in the vectors is the canonical form, as Rust prints it.
            assertEquals("canonical text of $addr", addr, ip.toString())
            return Target.Ip(SocketAddr(ip, port))
        }

        /** Builds the frame a vector describes, refusing values the model would silently change. */
        fun build(case: Case): Frame {
            val type = case.str("type")
            val f = case.obj("fields")
            for (key in f.keys()) {
                if (key !in allowedFields(type)) throw AssertionError("$type has no field $key")
            }
            return when (type) {
                "HELLO" -> Frame.Hello(
                    minVersion = f.int("min_version"),
                    maxVersion = f.int("max_version"),
                    deviceId = f.optBytes("device_id"),
                    agent = f.optStr("agent"),
                    maxStreams = f.optLong("max_streams"),
                    maxInflight = f.optLong("max_inflight"),
                    controlOnly = when (val v = f.optInt("session")) {
                        null, 0 -> false
                        1 -> true
                        else -> throw AssertionError("session $v in a valid vector")
                    },
                )
                "CHALLENGE" -> Frame.Challenge(f.optInt("version"), f.bytes("nonce"), f.optLong("server_time_ms"))
                "PROOF" -> Frame.Proof(f.bytes("nonce"), f.bytes("signature"))
                "PAIR" -> Frame.Pair(
                    code = f.str("code"),
                    keyAlg = KeyAlg.fromWire(f.int("key_alg")) ?: throw AssertionError("bad key_alg"),
                    publicKey = f.bytes("public_key"),
                    nonce = f.bytes("nonce"),
                    signature = f.bytes("signature"),
                    model = f.optStr("model"),
                    os = f.optStr("os"),
                    appVersion = f.optStr("app_version"),
                    attestation = if (f.has("attestation")) {
                        val list = f.strings("attestation")
                        assertTrue("an empty attestation list is written as an absent field", list.isNotEmpty())
                        list.map { Bytes.ofHex(it) }
                    } else {
                        emptyList()
                    },
                    hints = if (f.has("hints")) {
                        val list = f.strings("hints")
                        assertTrue("an empty hints list is written as an absent field", list.isNotEmpty())
                        list
                    } else {
                        emptyList()
                    },
                )
                "WELCOME" -> Frame.Welcome(
                    deviceId = f.bytes("device_id"),
                    vip = IpAddr.parseV4(f.str("vip")) ?: throw AssertionError("vip is not IPv4"),
                    heartbeatIntervalS = f.int("heartbeat_interval_s"),
                    maxStreams = f.long("max_streams"),
                    initialWindow = f.long("initial_window"),
                    maxFrame = f.long("max_frame"),
                    challengeIntervalS = f.int("challenge_interval_s"),
                    maxInflight = f.long("max_inflight"),
                    idleHeartbeatIntervalS = f.optInt("idle_heartbeat_interval_s"),
                )
                "HEARTBEAT" -> Frame.Heartbeat(
                    seq = f.long("seq"),
                    state = NodeState.fromWire(f.int("state")) ?: throw AssertionError("bad state"),
                    batteryPct = f.optInt("battery_pct"),
                    charging = f.optInt("charging")?.let {
                        when (it) {
                            0 -> false
                            1 -> true
                            else -> throw AssertionError("charging is neither 0 nor 1")
                        }
                    },
                    network = (f.optInt("network") ?: 0).let { n ->
                        NetworkType.fromWire(n).also { assertEquals("network $n is not modelled", n, it.wire) }
                    },
                    bytesToday = f.optLong("bytes_today"),
                    bytesMonth = f.optLong("bytes_month"),
                    maxStreams = f.optLong("max_streams"),
                    dailyCap = f.optLong("daily_cap"),
                    monthlyCap = f.optLong("monthly_cap"),
                    activeStreams = f.optLong("active_streams"),
                    uptimeS = f.optLong("uptime_s"),
                    pauseReason = f.optInt("pause_reason")?.let { r ->
                        PauseCode.fromWire(r).also { assertEquals("pause_reason $r is not modelled", r, it.wire) }
                    },
                    rttMs = f.optLong("rtt_ms"),
                )
                "HEARTBEAT_ACK" -> Frame.HeartbeatAck(
                    seq = f.long("seq"),
                    serverTimeMs = f.optLong("server_time_ms"),
                    bytesToday = f.optLong("bytes_today"),
                    earnedToday = f.optLong("earned_today"),
                    currency = f.optStr("currency"),
                )
                "DRAIN" -> Frame.Drain(f.optStr("reason"), f.optInt("deadline_s"))
                "ERROR" -> {
                    val n = f.int("code")
                    val code = ErrorCode.fromWire(n)
                    assertEquals("ERROR code $n is not modelled", n, code.wire)
                    Frame.Error(code, f.optStr("message") ?: "")
                }
                "STATS_REQUEST" -> Frame.StatsRequest(f.long("request_id"), f.optInt("days") ?: 0, f.optInt("months") ?: 0)
                "STATS" -> {
                    val n = f.int("status")
                    val status = StatsStatus.fromWire(n)
                    assertEquals("STATS status $n is not modelled", n, status.wire)
                    fun entries(key: String, max: Int): List<StatsEntry> {
                        if (!f.has(key)) return emptyList()
                        val list = f.list(key)
                        assertTrue("$key: 1..$max entries in a valid vector", list.size in 1..max)
                        return list.map {
                            @Suppress("UNCHECKED_CAST")
                            val e = Case(it as Map<String, Any?>)
                            StatsEntry(e.long("start_day"), e.long("bytes"), e.long("earned"))
                        }
                    }
                    Frame.Stats(
                        requestId = f.long("request_id"),
                        status = status,
                        currency = f.optStr("currency"),
                        today = f.optLong("today"),
                        days = entries("days", MAX_STATS_DAYS),
                        months = entries("months", MAX_STATS_MONTHS),
                        retryAfterS = f.optInt("retry_after_s"),
                    )
                }
                "UNPAIR" -> Frame.Unpair(f.long("request_id"), f.optStr("reason"))
                "UNPAIRED" -> Frame.Unpaired(f.long("request_id"))
                "OPEN" -> Frame.Open(f.long("stream"), f.long("window"), f.target(), f.has("probe") && f.bool("probe"))
                "OPEN_OK" -> {
                    val peer =
                        when (val t = f.target()) {
                            is Target.Ip -> t.addr.takeIf { it.port != 0 || !it.ip.isUnspecified }
                            is Target.Domain -> throw AssertionError("OPEN_OK with a domain peer in a valid vector")
                        }
                    Frame.OpenOk(f.long("stream"), f.long("window"), peer)
                }
                "OPEN_ERR" -> {
                    val n = f.int("reason")
                    val reason = OpenErrReason.fromWire(n)
                    assertEquals("OPEN_ERR reason $n is not modelled", n, reason.wire)
                    Frame.OpenErr(f.long("stream"), reason, f.str("message"))
                }
                "DATA" -> Frame.Data(f.long("stream"), f.bool("fin"), f.bytes("payload"))
                "WINDOW" -> Frame.Window(f.long("stream"), f.long("increment"))
                "RESET" -> {
                    val n = f.int("reason")
                    val reason = ResetReason.fromWire(n)
                    assertEquals("RESET reason $n is not modelled", n, reason.wire)
                    Frame.Reset(f.long("stream"), reason, f.str("message"))
                }
                else -> throw AssertionError("unknown frame type $type")
            }
        }

        /** The bytes of an invalid vector: `hex`, or `prefix_hex` then `repeat.hex` `repeat.count` times. */
        fun invalidBytes(case: Case): ByteArray {
            if (case.has("hex")) return Hex.decode(case.str("hex"))
            val repeat = case.obj("repeat")
            val unit = Hex.decode(repeat.str("hex"))
            val count = repeat.int("count")
            val prefix = Hex.decode(case.str("prefix_hex"))
            val out = ByteArray(prefix.size + unit.size * count)
            prefix.copyInto(out)
            for (i in 0 until count) unit.copyInto(out, prefix.size + i * unit.size)
            return out
        }
    }
}
