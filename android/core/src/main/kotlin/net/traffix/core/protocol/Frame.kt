package net.traffix.core.protocol

import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.util.Bytes

/*
 * The frames of the Traffix tunnel protocol, version 2 (docs/protocol.md), as values.
 *
 * Unsigned wire integers are held in the next wider signed Kotlin type, so none of them reads
 * as negative: u8 and u16 in Int, u32 in Long. u64 fields (times, byte counts, caps) are Long
 * and carry the 64 bits as they are; every real value is far below 2^63.
 * Constructors reject values that do not fit their wire width, so encoding never has to guess.
 */

/** The newest protocol version this build speaks. */
const val PROTOCOL_VERSION = 2

/**
 * The first version with control requests (STATS_REQUEST, STATS, UNPAIR, UNPAIRED; docs/protocol.md
 * "Control requests"). A session that negotiated less never sends them.
 */
const val CONTROL_VERSION = 2

/** The oldest protocol version this build still speaks. */
const val MIN_PROTOCOL_VERSION = 1

/** Frame header: type, flags, stream id. */
const val HEADER_LEN = 6

/** Largest frame (one WebSocket message), header included. */
const val MAX_FRAME_LEN = 64 * 1024

/** Largest DATA payload that fits in one frame. */
const val MAX_DATA_LEN = MAX_FRAME_LEN - HEADER_LEN

const val DEVICE_ID_LEN = 16
const val NONCE_LEN = 32

/** The most emulator hints a PAIR carries (tag 10), each at most [MAX_HINT_LEN] bytes of UTF-8. */
const val MAX_HINTS = 16
const val MAX_HINT_LEN = 64

/** Longest OPEN_ERR / RESET message in bytes of UTF-8; the encoder cuts longer text. */
const val MAX_MESSAGE_LEN = 1024

/** Longest domain name in OPEN, in bytes. */
const val MAX_DOMAIN_LEN = 253

/** Longest HEARTBEAT_ACK currency, in bytes of UTF-8; longer is a protocol violation. */
const val MAX_CURRENCY_LEN = 16

/** Most day entries in a STATS (the last 62 days). */
const val MAX_STATS_DAYS = 62

/** Most month entries in a STATS (two years). */
const val MAX_STATS_MONTHS = 24

/** One STATS entry on the wire: start_day u32, bytes u64, earned u64. */
const val STATS_ENTRY_LEN = 20

/** Longest UNPAIR reason, in bytes of UTF-8. */
const val MAX_UNPAIR_REASON_LEN = 200

internal const val U32_MAX = 0xffff_ffffL

internal fun requireU8(v: Int, what: String) = require(v in 0..0xff) { "$what $v does not fit a u8" }

internal fun requireU16(v: Int, what: String) = require(v in 0..0xffff) { "$what $v does not fit a u16" }

internal fun requireU32(v: Long, what: String) = require(v in 0..U32_MAX) { "$what $v does not fit a u32" }

internal fun requireLen(b: Bytes, n: Int, what: String) = require(b.size == n) { "$what has ${b.size} bytes, not $n" }

/** Signing algorithm of a device key. */
enum class KeyAlg(val wire: Int) {
    ED25519(1),
    ECDSA_P256(2),
    ;

    companion object {
        fun fromWire(v: Int): KeyAlg? = entries.firstOrNull { it.wire == v }
    }
}

/** What a node is willing to do, as reported in heartbeats. */
enum class NodeState(val wire: Int) {
    /** Route new streams here. */
    SERVING(0),

    /** Finish live streams; no new ones. */
    DRAINING(1),

    /** No new streams: the owner's resource policy said so. */
    PAUSED(2),
    ;

    companion object {
        fun fromWire(v: Int): NodeState? = entries.firstOrNull { it.wire == v }
    }
}

/** The network a node is on. Unknown wire values read as [UNKNOWN]: a newer node may know more. */
enum class NetworkType(val wire: Int) {
    UNKNOWN(0),
    WIFI(1),
    CELLULAR(2),
    ETHERNET(3),
    ;

    companion object {
        fun fromWire(v: Int): NetworkType = entries.firstOrNull { it.wire == v } ?: UNKNOWN
    }
}

/**
 * Which owner setting paused a node: HEARTBEAT tag 13, sent with state PAUSED. Unknown wire
 * values read as [OTHER] (a newer node may know more reasons).
 */
enum class PauseCode(val wire: Int) {
    OTHER(0),
    NOT_ON_WIFI(1),
    DAILY_CAP(2),
    MONTHLY_CAP(3),
    NOT_CHARGING(4),
    BATTERY_LOW(5),
    OUTSIDE_SCHEDULE(6),
    BY_OWNER(7),
    DATA_SAVER(8),
    BATTERY_SAVER(9),
    ;

    companion object {
        fun fromWire(v: Int): PauseCode = entries.firstOrNull { it.wire == v } ?: OTHER
    }
}

/** ERROR codes. Unknown wire values read as [INTERNAL]. */
enum class ErrorCode(val wire: Int) {
    VERSION_UNSUPPORTED(1),
    AUTH_FAILED(2),
    PAIRING_CODE_INVALID(3),
    DEVICE_BANNED(4),
    PROTOCOL_VIOLATION(5),
    REPLACED(6),
    SERVER_SHUTDOWN(7),
    LIMIT_EXCEEDED(8),
    CHALLENGE_TIMEOUT(9),
    INTERNAL(10),

    /** Version 2: the device was unpaired (by itself or the admin); forget the identity, pair again. */
    DEVICE_REMOVED(11),
    ;

    /** Whether a node should give up instead of reconnecting (a person has to act first). */
    val isFatal: Boolean
        get() = this == VERSION_UNSUPPORTED || this == AUTH_FAILED || this == PAIRING_CODE_INVALID ||
            this == DEVICE_BANNED || this == DEVICE_REMOVED

    companion object {
        fun fromWire(v: Int): ErrorCode = entries.firstOrNull { it.wire == v } ?: INTERNAL
    }
}

/** Whether a STATS carries the numbers asked for. Unknown wire values read as [UNAVAILABLE]. */
enum class StatsStatus(val wire: Int) {
    OK(0),

    /** Too many requests on this connection: ask again after `retryAfterS`. */
    RATE_LIMITED(1),

    /** The server has no numbers to give (billing off, or it could not read them). */
    UNAVAILABLE(2),
    ;

    companion object {
        fun fromWire(v: Int): StatsStatus = entries.firstOrNull { it.wire == v } ?: UNAVAILABLE
    }
}

/**
 * One day or month of the device's usage in a STATS: the period's first UTC day (days since
 * 1970-01-01), bytes carried both ways, and what its owner earned, in micro-units of the STATS
 * currency (u64 carried in a Long, like the other counters).
 */
data class StatsEntry(val startDay: Long, val bytes: Long, val earned: Long) {
    init {
        requireU32(startDay, "start_day")
    }
}

/** Why a node could not open a stream. Unknown wire values read as [INTERNAL]. */
enum class OpenErrReason(val wire: Int) {
    REFUSED_BY_POLICY(1),
    DNS_FAILED(2),
    CONNECTION_REFUSED(3),
    TIMEOUT(4),
    HOST_UNREACHABLE(5),
    NETWORK_UNREACHABLE(6),
    NODE_BUSY(7),
    DRAINING(8),
    INTERNAL(9),
    ;

    companion object {
        fun fromWire(v: Int): OpenErrReason = entries.firstOrNull { it.wire == v } ?: INTERNAL
    }
}

/** Why a stream was reset. Unknown wire values read as [INTERNAL]. */
enum class ResetReason(val wire: Int) {
    CANCEL(0),
    PROTOCOL_VIOLATION(1),
    FLOW_CONTROL(2),
    IDLE_TIMEOUT(3),
    INTERNAL(4),
    SHUTDOWN(5),

    /** The client's balance ran out. */
    BILLING(6),
    ;

    companion object {
        fun fromWire(v: Int): ResetReason = entries.firstOrNull { it.wire == v } ?: INTERNAL
    }
}

/** Where a stream should go: an IP endpoint, or a name the node resolves after its egress check. */
sealed class Target {
    abstract val port: Int

    data class Ip(val addr: SocketAddr) : Target() {
        override val port: Int get() = addr.port

        override fun toString(): String = addr.toString()
    }

    /** A domain name of 1–253 bytes of UTF-8, as the wire carries it (not yet validated as a host name). */
    data class Domain(val name: String, override val port: Int) : Target() {
        init {
            val n = name.toByteArray(Charsets.UTF_8).size
            require(n in 1..MAX_DOMAIN_LEN) { "domain name of $n bytes (1..$MAX_DOMAIN_LEN)" }
            requireU16(port, "port")
        }

        override fun toString(): String = "$name:$port"
    }
}

/** One frame of the tunnel protocol. [stream] is 0 for connection (control) frames. */
sealed class Frame {
    abstract val stream: Long

    /** The frame name of docs/protocol.md (`HELLO`, `OPEN_OK`, …). */
    abstract val name: String

    /** A control frame, always on stream 0. */
    sealed class Control : Frame() {
        override val stream: Long get() = 0
    }

    data class Hello(
        val minVersion: Int,
        val maxVersion: Int,
        val deviceId: Bytes? = null,
        val agent: String? = null,
        val maxStreams: Long? = null,
        val maxInflight: Long? = null,
        /** Tag 16 (version 2): a control-only session — no streams, never replaces the serving tunnel. */
        val controlOnly: Boolean = false,
    ) : Control() {
        init {
            requireU8(minVersion, "min_version")
            requireU8(maxVersion, "max_version")
            deviceId?.let { requireLen(it, DEVICE_ID_LEN, "device_id") }
            maxStreams?.let { requireU32(it, "max_streams") }
            maxInflight?.let { requireU32(it, "max_inflight") }
        }

        override val name get() = "HELLO"
    }

    /** [version] is set on the first CHALLENGE of a connection only. */
    data class Challenge(val version: Int? = null, val nonce: Bytes, val serverTimeMs: Long? = null) : Control() {
        init {
            version?.let { requireU8(it, "version") }
            requireLen(nonce, NONCE_LEN, "nonce")
        }

        override val name get() = "CHALLENGE"
    }

    data class Proof(val nonce: Bytes, val signature: Bytes) : Control() {
        init {
            requireLen(nonce, NONCE_LEN, "nonce")
        }

        override val name get() = "PROOF"
    }

    /**
     * [attestation] is the certificate chain in wire order, leaf first; empty when absent.
     * [hints] are emulator hints the app reports (weak signals for the admin, docs/trust.md).
     */
    data class Pair(
        val code: String,
        val keyAlg: KeyAlg,
        val publicKey: Bytes,
        val nonce: Bytes,
        val signature: Bytes,
        val model: String? = null,
        val os: String? = null,
        val appVersion: String? = null,
        val attestation: List<Bytes> = emptyList(),
        val hints: List<String> = emptyList(),
    ) : Control() {
        init {
            requireLen(nonce, NONCE_LEN, "nonce")
        }

        override val name get() = "PAIR"
    }

    data class Welcome(
        val deviceId: Bytes,
        val vip: IpAddr.V4,
        val heartbeatIntervalS: Int,
        val maxStreams: Long,
        val initialWindow: Long,
        val maxFrame: Long,
        val challengeIntervalS: Int,
        val maxInflight: Long,
        /** Tag 9: the interval the node may heartbeat at while it has no live streams. */
        val idleHeartbeatIntervalS: Int? = null,
    ) : Control() {
        init {
            requireLen(deviceId, DEVICE_ID_LEN, "device_id")
            requireU16(heartbeatIntervalS, "heartbeat_interval_s")
            requireU32(maxStreams, "max_streams")
            requireU32(initialWindow, "initial_window")
            requireU32(maxFrame, "max_frame")
            requireU16(challengeIntervalS, "challenge_interval_s")
            requireU32(maxInflight, "max_inflight")
            idleHeartbeatIntervalS?.let { requireU16(it, "idle_heartbeat_interval_s") }
        }

        override val name get() = "WELCOME"
    }

    /** [batteryPct] absent means mains power. */
    data class Heartbeat(
        val seq: Long,
        val state: NodeState,
        val batteryPct: Int? = null,
        val charging: Boolean? = null,
        val network: NetworkType = NetworkType.UNKNOWN,
        val bytesToday: Long? = null,
        val bytesMonth: Long? = null,
        val maxStreams: Long? = null,
        val dailyCap: Long? = null,
        val monthlyCap: Long? = null,
        val activeStreams: Long? = null,
        val uptimeS: Long? = null,
        val pauseReason: PauseCode? = null,
        /** Tag 14: the node's last HEARTBEAT -> HEARTBEAT_ACK round trip, in milliseconds. */
        val rttMs: Long? = null,
    ) : Control() {
        init {
            requireU32(seq, "seq")
            rttMs?.let { requireU32(it, "rtt_ms") }
            batteryPct?.let { requireU8(it, "battery_pct") }
            maxStreams?.let { requireU32(it, "max_streams") }
            activeStreams?.let { requireU32(it, "active_streams") }
        }

        override val name get() = "HEARTBEAT"
    }

    /**
     * [bytesToday], [earnedToday] and [currency] are the server's count for this device today
     * (UTC day): bytes carried both ways, and what its owner earned from it in integer
     * micro-units (1_000_000 = 1.00) of [currency] (at most [MAX_CURRENCY_LEN] bytes of UTF-8).
     * The server sends them when it meters traffic. Informational, for the owner's notification
     * and stats screen: the server's ledger is authoritative. Not [Heartbeat.bytesToday], which
     * is the node's own measure against its data caps.
     */
    data class HeartbeatAck(
        val seq: Long,
        val serverTimeMs: Long? = null,
        val bytesToday: Long? = null,
        val earnedToday: Long? = null,
        val currency: String? = null,
    ) : Control() {
        init {
            requireU32(seq, "seq")
            currency?.let {
                val n = it.toByteArray(Charsets.UTF_8).size
                require(n <= MAX_CURRENCY_LEN) { "currency of $n bytes (at most $MAX_CURRENCY_LEN)" }
            }
        }

        override val name get() = "HEARTBEAT_ACK"
    }

    /** "Finish your streams, send me no new ones." */
    data class Drain(val reason: String? = null, val deadlineS: Int? = null) : Control() {
        init {
            deadlineS?.let { requireU16(it, "deadline_s") }
        }

        override val name get() = "DRAIN"
    }

    /** The sender closes the WebSocket after it. */
    data class Error(val code: ErrorCode, val message: String = "") : Control() {
        override val name get() = "ERROR"
    }

    /** Version 2: the device's own traffic and earnings, the last [days] days and [months] months. */
    data class StatsRequest(val requestId: Long, val days: Int = 0, val months: Int = 0) : Control() {
        init {
            requireU32(requestId, "request_id")
            requireU16(days, "days")
            requireU16(months, "months")
        }

        override val name get() = "STATS_REQUEST"
    }

    /**
     * Version 2: the answer to a STATS_REQUEST. [days] and [months] are oldest first, every
     * period present, the last one today / this month; earnings in micro-units of [currency].
     */
    data class Stats(
        val requestId: Long,
        val status: StatsStatus,
        val currency: String? = null,
        val today: Long? = null,
        val days: List<StatsEntry> = emptyList(),
        val months: List<StatsEntry> = emptyList(),
        val retryAfterS: Int? = null,
    ) : Control() {
        init {
            requireU32(requestId, "request_id")
            currency?.let {
                val n = it.toByteArray(Charsets.UTF_8).size
                require(n <= MAX_CURRENCY_LEN) { "currency of $n bytes (at most $MAX_CURRENCY_LEN)" }
            }
            today?.let { requireU32(it, "today") }
            require(days.size <= MAX_STATS_DAYS) { "${days.size} day entries (at most $MAX_STATS_DAYS)" }
            require(months.size <= MAX_STATS_MONTHS) { "${months.size} month entries (at most $MAX_STATS_MONTHS)" }
            retryAfterS?.let { requireU16(it, "retry_after_s") }
        }

        override val name get() = "STATS"
    }

    /** Version 2: forget this device; [reason] (at most [MAX_UNPAIR_REASON_LEN] bytes) is audited. */
    data class Unpair(val requestId: Long, val reason: String? = null) : Control() {
        init {
            requireU32(requestId, "request_id")
            reason?.let {
                val n = it.toByteArray(Charsets.UTF_8).size
                require(n <= MAX_UNPAIR_REASON_LEN) { "reason of $n bytes (at most $MAX_UNPAIR_REASON_LEN)" }
            }
        }

        override val name get() = "UNPAIR"
    }

    /** Version 2: the device is forgotten; the server closes the tunnel next. */
    data class Unpaired(val requestId: Long) : Control() {
        init {
            requireU32(requestId, "request_id")
        }

        override val name get() = "UNPAIRED"
    }

    /** A stream frame: [stream] is never 0, except for WINDOW, where 0 is the connection window. */
    sealed class StreamFrame : Frame()

    /**
     * [probe]: flag bit 1, a quality probe from the server's watchdog to its own probe endpoint —
     * the only target exempt from the own-server refusal (SECURITY.md §1, [net.traffix.core.egress.EgressPolicy.probeEndpoint]).
     */
    data class Open(override val stream: Long, val window: Long, val target: Target, val probe: Boolean = false) : StreamFrame() {
        init {
            requireStream(stream)
            requireU32(window, "window")
        }

        override val name get() = "OPEN"
    }

    /** [peer] is the address the node connected to; null when it has none to tell. */
    data class OpenOk(override val stream: Long, val window: Long, val peer: SocketAddr?) : StreamFrame() {
        init {
            requireStream(stream)
            requireU32(window, "window")
            require(peer == null || peer.port != 0 || !peer.ip.isUnspecified) {
                "the unspecified address at port 0 means no peer: use null"
            }
        }

        override val name get() = "OPEN_OK"
    }

    /** [message] is for logs; the encoder cuts it to [MAX_MESSAGE_LEN] bytes. */
    data class OpenErr(override val stream: Long, val reason: OpenErrReason, val message: String = "") :
        StreamFrame() {
        init {
            requireStream(stream)
        }

        override val name get() = "OPEN_ERR"
    }

    /** [fin] ends the sender's direction; the payload may then be empty. */
    data class Data(override val stream: Long, val fin: Boolean, val payload: Bytes) : StreamFrame() {
        init {
            requireStream(stream)
            require(payload.size <= MAX_DATA_LEN) { "DATA payload of ${payload.size} bytes exceeds $MAX_DATA_LEN" }
            require(fin || !payload.isEmpty()) { "an empty DATA frame needs FIN" }
        }

        override val name get() = "DATA"
    }

    /** Returns credit; stream 0 is the connection window. */
    data class Window(override val stream: Long, val increment: Long) : StreamFrame() {
        init {
            requireU32(stream, "stream")
            requireU32(increment, "increment")
        }

        override val name get() = "WINDOW"
    }

    /** [message] is for logs; the encoder cuts it to [MAX_MESSAGE_LEN] bytes. */
    data class Reset(override val stream: Long, val reason: ResetReason, val message: String = "") :
        StreamFrame() {
        init {
            requireStream(stream)
        }

        override val name get() = "RESET"
    }

    companion object {
        private fun requireStream(stream: Long) =
            require(stream in 1..U32_MAX) { "stream id $stream is not a non-zero u32" }
    }
}
