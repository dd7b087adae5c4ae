package net.traffix.core.agent

import javax.net.SocketFactory
import net.traffix.core.egress.EgressPolicy
import net.traffix.core.mux.MuxConfig
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.DataUsage
import net.traffix.core.policy.ResourceDecision
import net.traffix.core.protocol.ErrorCode
import net.traffix.core.protocol.NetworkType

/**
 * Where the agent is in a tunnel's life (docs/protocol.md "Connection handshake"):
 * paired → connecting → challenged → serving → draining → backing off → connecting …, until
 * stopped, or failed for a reason only the owner can fix.
 */
enum class Phase(val text: String) {
    /** Has a pairing link (and maybe a key the server knows); not started. */
    PAIRED("ready"),

    /** Opening TLS and the WebSocket, HELLO sent, waiting for CHALLENGE. */
    CONNECTING("connecting"),

    /** CHALLENGE answered with PROOF (or PAIR), waiting for WELCOME. */
    CHALLENGED("signing in"),

    /** WELCOME received: the tunnel is up. Whether streams are taken is the [ResourceDecision]. */
    SERVING("online"),

    /** The server asked for a drain, or the owner stopped the node: live streams finish, no new ones. */
    DRAINING("finishing streams"),

    /** The tunnel is down; the next attempt is scheduled. */
    BACKING_OFF("reconnecting"),

    /**
     * The owner's settings or the phone's facts pause sharing (not on Wi-Fi, a cap, the battery,
     * the schedule, Data Saver, Battery Saver): the
     * tunnel is closed until they allow it again ([ResourceDecision] says why).
     */
    PAUSED("paused"),

    /** The owner stopped the node. */
    STOPPED("stopped"),

    /** The server refused for good (banned, pairing code invalid, version): needs the owner. */
    FAILED("needs attention"),
}

/**
 * What PAIR tells the server about the device (shown in the dashboard). [emulatorHints] are weak
 * signals for the admin ([net.traffix.core.identity.EmulatorHints]).
 */
data class DeviceInfo(
    val model: String? = null,
    val os: String? = null,
    val appVersion: String? = null,
    val emulatorHints: List<String> = emptyList(),
)

/**
 * The phone's state that the resource policy needs ([net.traffix.core.policy.DeviceConditions]);
 * the app pushes it when it changes.
 */
data class DeviceSample(
    val network: NetworkType,
    /** 0–100, or null without a battery (mains). */
    val batteryPct: Int?,
    val charging: Boolean,
    /**
     * The network may cost the owner per byte (Android: no `NET_CAPABILITY_NOT_METERED`; a
     * phone's hotspot is metered Wi-Fi). Null without a platform answer: then anything but
     * Wi-Fi or Ethernet is metered ([isMetered]), also after a `copy(network = …)`.
     */
    val metered: Boolean? = null,
    /** The network is roaming (Android: no `NET_CAPABILITY_NOT_ROAMING`). */
    val roaming: Boolean = false,
    /** The owner turned on Data Saver for this app (`RESTRICT_BACKGROUND_STATUS_ENABLED`). */
    val dataSaver: Boolean = false,
    /** The phone is in Battery Saver (`PowerManager.isPowerSaveMode`). */
    val batterySaver: Boolean = false,
) {
    /** [metered], or judged by the network's type when the platform did not say. */
    val isMetered: Boolean get() = metered ?: (network != NetworkType.WIFI && network != NetworkType.ETHERNET)
}

/** How the agent connects and serves. Defaults are the server's `[limits]` and SECURITY.md §2. */
data class AgentConfig(
    /** From the dashboard's QR code or pasted link. */
    val link: PairLink,
    /** The server accepted this device's key before: answer CHALLENGE with PROOF, not PAIR. */
    val paired: Boolean,
    val device: DeviceInfo = DeviceInfo(),
    /** HELLO's agent text (≤ 64 bytes). */
    val agentName: String = "traffix-android",
    val mux: MuxConfig = MuxConfig(),
    /**
     * Most DATA bytes the node keeps in flight towards the server, whatever the server's window:
     * what OkHttp may queue stays well under its 16 MiB limit (past which it closes the socket).
     */
    val maxQueuedBytes: Long = 8L * 1024 * 1024,
    /** Lifts the special-range checks (SECURITY.md §1): loopback test rigs only. */
    val allowPrivateTargets: Boolean = false,
    val blockedPorts: List<IntRange> = EgressPolicy.DEFAULT_BLOCKED_PORTS,
    val dialTimeoutMillis: Long = 10_000,
    val handshakeTimeoutMillis: Long = 10_000,
    val idleTimeoutMillis: Long = 60_000,
    /** How long a stop waits for live streams before cutting them. */
    val drainDeadlineMillis: Long = 10_000,
    /** Plain `ws://` for a server on `--insecure-http` (development only; the app never sets it). */
    val allowInsecure: Boolean = false,
    /**
     * Makes the sockets of every dial to a target: on Android the chosen network's
     * (`Network.getSocketFactory()`), so a handover never moves a stream onto another network.
     * The tunnel's sockets are the transport's ([net.traffix.core.transport.OkHttpTransport]).
     */
    val socketFactory: SocketFactory = SocketFactory.getDefault(),
)

/**
 * Why the last tunnel ended or the last attempt failed: a [kind] the app words through a string
 * resource (core `UiText.of(kind)`), and data — never a sentence of ours for the screen.
 */
data class AgentError(
    val kind: Kind,
    /** The server's ERROR code ([Kind.SERVER_REFUSED]). */
    val code: ErrorCode? = null,
    /**
     * Data for the text and the log: the server's ERROR message, seconds of silence
     * ([Kind.SERVER_SILENT]), the platform's or the transport's own reason (an exception's
     * message, "connection reset"); empty when there is none.
     */
    val detail: String = "",
) {
    enum class Kind {
        /** No pairing code and never paired: scan a new one. */
        NOT_PAIRED,

        /** The link is for a development server without TLS: the app only connects over TLS. */
        INSECURE_LINK,

        /** The device key could not be made (Keystore, StrongBox). */
        KEY_UNAVAILABLE,

        /** The device key is gone (Keystore reset, data moved to another phone). */
        KEY_LOST,

        /** The device key exists but cannot sign (locked, hardware error). */
        KEY_CANNOT_SIGN,

        /** TLS, WebSocket, CHALLENGE and WELCOME took longer than the handshake allows. */
        HANDSHAKE_TIMEOUT,

        /** The server was not reached (no network, refused, TLS or pin failure) before WELCOME. */
        CANNOT_CONNECT,

        /** An established tunnel ended (network lost, server gone). */
        CONNECTION_LOST,

        /** The server sent nothing for longer than the liveness rule allows; [detail] is the seconds. */
        SERVER_SILENT,

        /** The server refused with ERROR [code]; [detail] is its message. */
        SERVER_REFUSED,

        /** The server asked for a drain (restart, maintenance) and the tunnel ended after it. */
        SERVER_DRAINED,

        /** The server broke the protocol; the node answered ERROR 5. */
        PROTOCOL_VIOLATION,
    }

    /** The server refused this app's protocol version (ERROR 1): only an update helps. */
    val updateRequired: Boolean get() = kind == Kind.SERVER_REFUSED && code == ErrorCode.VERSION_UNSUPPORTED

    /** English, for the log only (`adb logcat`, the support log): the app shows [kind]'s string. */
    override fun toString(): String {
        val what =
            when (kind) {
                Kind.NOT_PAIRED -> "this device was never paired: scan a new pairing code"
                Kind.INSECURE_LINK -> "the pairing link is for a development server without TLS; this app only connects over TLS"
                Kind.KEY_UNAVAILABLE -> "cannot create the device key"
                Kind.KEY_LOST -> "the device key is gone"
                Kind.KEY_CANNOT_SIGN -> "the device key cannot sign"
                Kind.HANDSHAKE_TIMEOUT -> "handshake timed out"
                Kind.CANNOT_CONNECT -> "cannot open the tunnel"
                Kind.CONNECTION_LOST -> "tunnel lost"
                Kind.SERVER_SILENT -> "server silent for $detail s"
                Kind.SERVER_REFUSED -> "server refused: ${code?.name?.lowercase() ?: "error"}"
                Kind.SERVER_DRAINED -> "drained"
                Kind.PROTOCOL_VIOLATION -> "protocol violation by the server"
            }
        return if (detail.isEmpty() || kind == Kind.SERVER_SILENT) what else "$what: $detail"
    }
}

/** What the server said this device did today (HEARTBEAT_ACK; informational, the ledger is authoritative). */
data class ServerTally(val bytesToday: Long?, val earnedToday: Long?, val currency: String?)

/** A snapshot for the notification and the stats screen. */
data class AgentStatus(
    val phase: Phase,
    val decision: ResourceDecision,
    val activeStreams: Int,
    /** The device's virtual IP once the server welcomed it. */
    val vip: String?,
    /** Why the last tunnel ended or the last attempt failed. */
    val lastError: AgentError?,
    /** Wall-clock time of the next attempt while [Phase.BACKING_OFF]. */
    val retryAtMillis: Long?,
    /** Wall-clock time the current tunnel came up. */
    val connectedSinceMillis: Long?,
    /** Smoothed heartbeat round trip. */
    val rttMillis: Long?,
    /** Bytes this node carried, as the owner's caps count them. */
    val usage: DataUsage,
    /** Streams dialed and relayed since start. */
    val streamsServed: Long,
    /** Streams refused by the egress policy, the owner's limits or a drain. */
    val streamsRefused: Long,
    /** Streams whose target could not be reached (DNS, refused, timeout). */
    val streamsFailed: Long,
    val server: ServerTally?,
) {
    /** Share of dials that reached their target, 0–100; null before the first. */
    val dialSuccessPct: Int?
        get() {
            val tried = streamsServed + streamsFailed
            return if (tried == 0L) null else (streamsServed * 100 / tried).toInt()
        }
}

/** What the app hears from the agent; called on the agent's thread, so keep it short. */
interface AgentListener {
    fun onStatus(status: AgentStatus) {}

    /** The server accepted the pairing: persist that PROOF is used from now on. */
    fun onPaired(vip: String) {}

    /**
     * The server forgot this device (the owner unpaired it, or the admin removed it): delete
     * the key and the saved pairing; only a new pairing link brings the node back.
     */
    fun onUnpaired() {}
}

enum class LogLevel { DEBUG, INFO, WARN }

/**
 * Where the agent says what it did, for the platform's log (Logcat in the app): tunnel up and
 * down with the reason, back-off delays, policy changes, refused and failed streams. Messages are
 * `event key=value …` lines without secrets (no pairing code, no key material) and without
 * client targets (the owner's phone is not told where clients go). Called from the
 * agent's and the stream threads: keep it cheap.
 */
fun interface AgentLog {
    fun log(level: LogLevel, message: String)

    companion object {
        val NONE = AgentLog { _, _ -> }
    }
}
