package net.traffix.core.egress

import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr

/*
 * Node egress policy (SECURITY.md §1): may a client reach this target through this node?
 *
 * A port of the reference implementation, src/egress.rs, checked against the same vectors
 * (tests/vectors/egress.json): the blocked-port list, the host-spelling rules (canonical literals
 * only, zone ids, local names, malformed names), the special-purpose address table (IPv4 and
 * IPv6, including the embedded-IPv4 forms ::ffff:0:0/96, ::/96, NAT64, 6to4 and Teredo), the
 * node's own networks and the Traffix server's own listeners.
 *
 * The caller drives the sequence of §1: [EgressPolicy.checkTarget] on the requested host and
 * port, resolve the name once, [EgressPolicy.checkAddr] on every resolved address, dial the
 * checked IP literal (never the name again), and compare the connected peer with it.
 *
 * Pure: no I/O, no name resolution, no clock, no logging.
 */

/** A target host after the spelling checks. */
sealed class Host {
    /** A canonical IPv4 dotted quad or an IPv6 literal (brackets removed). */
    data class Ip(val ip: IpAddr) : Host() {
        override fun toString(): String = ip.toString()
    }

    /** A DNS name, lower-cased, without the trailing dot. */
    data class Name(val name: String) : Host() {
        override fun toString(): String = name
    }
}

/**
 * Why a target was refused. [code] is stable (shared with the Rust agent and the vectors);
 * [message] is a short human reason, shown to clients and logged, with client text quoted.
 */
sealed class Refusal(val code: String) {
    abstract val message: String

    override fun toString(): String = message

    /** The port is on the blocked list (port 0 is always refused). */
    data class BlockedPort(val port: Int) : Refusal("blocked_port") {
        override val message get() = "port $port is blocked by the egress policy"
    }

    /** The address lies in a special-purpose range; for embedded-IPv4 forms, the IPv4's range. */
    data class SpecialRange(val addr: IpAddr, val range: String) : Refusal("special_range") {
        override val message get() = "$addr is in the special-purpose range $range"
    }

    /** `localhost`, `*.localhost`, `*.local`, `*.home.arpa`, `*.internal`, `*.lan`. */
    data class LocalName(val name: String) : Refusal("local_name") {
        override val message get() = "${quote(name)} is a local name"
    }

    /** Empty, too long, control characters, `%`, bad labels and similar. */
    data class InvalidName(val why: String) : Refusal("invalid_name") {
        override val message get() = "invalid host name: $why"
    }

    /** Read as an address by an inet_aton-style parser but not a canonical dotted quad (`127.1`). */
    data class NonCanonicalNumeric(val host: String) : Refusal("non_canonical_numeric") {
        override val message get() = "${quote(host)} is a non-canonical numeric address (use a dotted quad)"
    }

    /** An IPv6 literal with a zone id (`fe80::1%wlan0`). */
    data class ZonedIpv6(val host: String) : Refusal("zoned_ipv6") {
        override val message get() = "${quote(host)} is an IPv6 address with a zone id"
    }

    /** One of the node's own addresses or networks (interfaces, on-link prefixes, gateway, DNS). */
    data class OwnAddress(val addr: IpAddr) : Refusal("own_address") {
        override val message get() = "$addr belongs to the node's own network"
    }

    /** The Traffix server's own listener (a proxy loop). */
    data class ServerListener(val addr: SocketAddr) : Refusal("server_listener") {
        override val message get() = "$addr is the Traffix server's own listener"
    }

    companion object {
        val CODES = listOf(
            "blocked_port", "special_range", "local_name", "invalid_name", "non_canonical_numeric", "zoned_ipv6",
            "own_address", "server_listener",
        )

        /** Client text in quotes with control and non-ASCII characters escaped, so nothing odd reaches a log. */
        internal fun quote(s: String): String {
            val sb = StringBuilder(s.length + 2).append('"')
            for (c in s) {
                when {
                    c == '"' -> sb.append("\\\"")
                    c == '\\' -> sb.append("\\\\")
                    c == '\n' -> sb.append("\\n")
                    c == '\r' -> sb.append("\\r")
                    c == '\t' -> sb.append("\\t")
                    c.code < 0x20 || c.code in 0x7f..0x9f -> sb.append("\\u{").append(Integer.toHexString(c.code)).append('}')
                    else -> sb.append(c)
                }
            }
            return sb.append('"').toString()
        }
    }
}

/** The outcome of [EgressPolicy.checkTarget]. */
sealed class TargetCheck {
    data class Allowed(val host: Host) : TargetCheck()

    data class Refused(val refusal: Refusal) : TargetCheck()
}

/** A network of the node: an address and a prefix length (above 32 / 128: a single address). */
data class OwnNetwork(val addr: IpAddr, val prefixLen: Int) {
    init {
        require(prefixLen >= 0) { "negative prefix length" }
    }

    override fun toString(): String = "$addr/$prefixLen"

    companion object {
        /** `addr/len`, or null. */
        fun parse(cidr: String): OwnNetwork? {
            val slash = cidr.indexOf('/')
            if (slash < 0) return null
            val addr = IpAddr.parse(cidr.substring(0, slash)) ?: return null
            val len = cidr.substring(slash + 1).toIntOrNull()?.takeIf { it in 0..255 } ?: return null
            return OwnNetwork(addr, len)
        }
    }
}

/**
 * The node's egress policy, built from settings plus the node's current network state.
 *
 * @property allowPrivateTargets tests on one machine only: lifts the special-range, own-network
 *   and local-name checks (never the blocked ports or the server's listeners).
 * @property blockedPorts inclusive port ranges that are refused; port 0 is refused regardless.
 * @property ownNetworks the node's interface addresses, on-link prefixes, gateway and DNS servers.
 * @property serverEndpoints the Traffix server's own listeners.
 */
data class EgressPolicy(
    val allowPrivateTargets: Boolean = false,
    val blockedPorts: List<IntRange> = DEFAULT_BLOCKED_PORTS,
    val ownNetworks: List<OwnNetwork> = emptyList(),
    val serverEndpoints: List<SocketAddr> = emptyList(),
) {
    /**
     * Before resolution: the port, then the host spelling. A literal IP is checked at once with
     * [checkAddr]; a name is refused when it is local (unless [allowPrivateTargets]). The port
     * comes first, so a blocked port is reported even for a bad host.
     */
    fun checkTarget(host: String, port: Int): TargetCheck {
        checkPort(port)?.let { return TargetCheck.Refused(it) }
        val parsed =
            when (val p = parseHost(host)) {
                is TargetCheck.Refused -> return p
                is TargetCheck.Allowed -> p.host
            }
        when (parsed) {
            is Host.Ip -> checkAddr(SocketAddr(parsed.ip, port))?.let { return TargetCheck.Refused(it) }
            is Host.Name ->
                if (!allowPrivateTargets && isLocalName(parsed.name)) {
                    return TargetCheck.Refused(Refusal.LocalName(parsed.name))
                }
        }
        return TargetCheck.Allowed(parsed)
    }

    /**
     * After resolution, on every resolved address, and again on the connected peer: the port,
     * the server's listeners, then [checkIp]. Null when allowed.
     */
    fun checkAddr(addr: SocketAddr): Refusal? {
        checkPort(addr.port)?.let { return it }
        serverEndpoints.firstOrNull { it.port == addr.port && sameHost(addr.ip, it.ip) }?.let {
            return Refusal.ServerListener(it)
        }
        return checkIp(addr.ip)
    }

    /**
     * The one exemption from the own-server refusal: an OPEN flagged `probe` (the server's
     * watchdog) to one of the server's own addresses — never its tunnel endpoint. The address to
     * dial, or null when a probe there is refused.
     */
    fun probeEndpoint(addr: SocketAddr): SocketAddr? {
        if (serverEndpoints.any { it.port == addr.port && sameHost(addr.ip, it.ip) }) return null
        return if (serverEndpoints.any { sameHost(addr.ip, it.ip) }) addr else null
    }

    /** Special ranges, then the node's own networks; both lifted by [allowPrivateTargets]. Null when allowed. */
    fun checkIp(ip: IpAddr): Refusal? {
        if (allowPrivateTargets) return null
        specialRange(ip)?.let { return Refusal.SpecialRange(ip, it) }
        if (ownNetworks.any { inOwnNetwork(ip, it) }) return Refusal.OwnAddress(ip)
        return null
    }

    private fun checkPort(port: Int): Refusal? {
        val blocked = port == 0 || blockedPorts.any { port in it }
        return if (blocked) Refusal.BlockedPort(port) else null
    }

    companion object {
        /** Ports denied by default, inclusive ranges [Tor default exit policy + mail submission]. */
        val DEFAULT_BLOCKED_PORTS: List<IntRange> = listOf(
            25..25, 465..465, 587..587, 119..119, 563..563, 135..139, 445..445, 1214..1214, 4661..4666,
            6346..6429, 6699..6699, 6881..6999,
        )

        /** The allow-list an operator may narrow to for untrusted clients (SECURITY.md §1). */
        val UNTRUSTED_CLIENT_PORTS: List<Int> = listOf(80, 443, 8080, 8443)

        /** The blocked-port ranges that leave exactly [allowed] open (port 0 is refused regardless). */
        fun blockedPortsExcept(allowed: Collection<Int>): List<IntRange> {
            val open = allowed.filter { it in 1..0xffff }.toSortedSet()
            val ranges = ArrayList<IntRange>(open.size + 1)
            var next = 1
            for (port in open) {
                if (port > next) ranges.add(next until port)
                next = port + 1
            }
            if (next <= 0xffff) ranges.add(next..0xffff)
            return ranges
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host spelling

/** Longest host spelling looked at: a 253-byte name plus a trailing dot, or a bracketed literal. */
private const val MAX_HOST_LEN = 255

/** RFC 1035 limits, without the trailing dot. */
private const val MAX_NAME_LEN = 253
private const val MAX_LABEL_LEN = 63

private fun utf8Len(s: String): Int = s.toByteArray(Charsets.UTF_8).size

/**
 * Parses a host spelling: a canonical dotted quad or an IPv6 literal (brackets allowed) is an
 * IP; anything an inet_aton-style parser would read as a number but that is not a canonical
 * dotted quad is [Refusal.NonCanonicalNumeric]; a zone id is [Refusal.ZonedIpv6]; otherwise a
 * validated DNS name, lower-cased, without its trailing dot.
 *
 * "Read as a number" follows the WHATWG URL host parser: the last dot-separated part (after
 * dropping one empty part left by a trailing dot) is all decimal digits, or `0x`/`0X` followed
 * by hex digits.
 */
fun parseHost(host: String): TargetCheck {
    fun invalid(why: String) = TargetCheck.Refused(Refusal.InvalidName(why))
    if (host.isEmpty()) return invalid("empty")
    if (utf8Len(host) > MAX_HOST_LEN) return invalid("too long")
    if (host.any { it.code < 0x20 || it.code == 0x7f }) return invalid("control character")
    if (host.startsWith("[")) {
        val rest = host.substring(1)
        if (!rest.endsWith("]")) return invalid("unbalanced bracket")
        return parseIpv6Literal(host, rest.substring(0, rest.length - 1))
    }
    if (host.contains('%') || host.contains(':')) return parseIpv6Literal(host, host)
    if (endsInNumber(host)) {
        val v4 = parseCanonicalIpv4(host)
        return if (v4 != null) {
            TargetCheck.Allowed(Host.Ip(v4))
        } else {
            TargetCheck.Refused(Refusal.NonCanonicalNumeric(host))
        }
    }
    return parseName(host)
}

/** [inner] is the literal without brackets; [original] is what the client sent. */
private fun parseIpv6Literal(original: String, inner: String): TargetCheck {
    val percent = inner.indexOf('%')
    if (percent >= 0) {
        val addr = inner.substring(0, percent)
        val refusal =
            when {
                IpAddr.parseV6(addr) != null -> Refusal.ZonedIpv6(original)
                addr.contains(':') -> Refusal.InvalidName("malformed IPv6 literal")
                else -> Refusal.InvalidName("'%' in name")
            }
        return TargetCheck.Refused(refusal)
    }
    val v6 = IpAddr.parseV6(inner) ?: return TargetCheck.Refused(Refusal.InvalidName("malformed IPv6 literal"))
    return TargetCheck.Allowed(Host.Ip(v6))
}

private fun isAsciiDigit(c: Char) = c in '0'..'9'

private fun isAsciiHexDigit(c: Char) = c in '0'..'9' || c in 'a'..'f' || c in 'A'..'F'

private fun endsInNumber(host: String): Boolean {
    val trimmed = host.removeSuffix(".")
    val last = trimmed.substring(trimmed.lastIndexOf('.') + 1)
    if (last.isNotEmpty() && last.all(::isAsciiDigit)) return true
    return (last.startsWith("0x") || last.startsWith("0X")) && last.substring(2).all(::isAsciiHexDigit)
}

/** Exactly four decimal parts 0..=255, no leading zeros, no trailing dot. */
private fun parseCanonicalIpv4(host: String): IpAddr.V4? {
    val parts = host.split('.')
    if (parts.size != 4) return null
    var bits = 0
    for (part in parts) {
        val wellFormed = part.isNotEmpty() && part.length <= 3 && part.all(::isAsciiDigit) &&
            (part == "0" || !part.startsWith("0"))
        if (!wellFormed) return null
        val v = part.toInt()
        if (v > 255) return null
        bits = (bits shl 8) or v
    }
    return IpAddr.V4(bits)
}

/**
 * Letters, digits, `-` and `_` (seen in real host names); labels of 1..63 bytes not starting or
 * ending with `-`; at most 253 bytes without the trailing dot. IDNs must arrive as A-labels.
 */
private fun parseName(host: String): TargetCheck {
    fun invalid(why: String) = TargetCheck.Refused(Refusal.InvalidName(why))
    val name = host.removeSuffix(".")
    if (name.isEmpty()) return invalid("empty")
    if (utf8Len(name) > MAX_NAME_LEN) return invalid("too long")
    if (host.contains('%')) return invalid("'%' in name")
    for (label in name.split('.')) {
        if (label.isEmpty()) return invalid("empty label")
        if (utf8Len(label) > MAX_LABEL_LEN) return invalid("label too long")
        if (label.any { it.code >= 0x80 }) return invalid("non-ASCII character")
        if (!label.all { it in 'a'..'z' || it in 'A'..'Z' || it in '0'..'9' || it == '-' || it == '_' }) {
            return invalid("invalid character")
        }
        if (label.startsWith("-") || label.endsWith("-")) return invalid("label starts or ends with '-'")
    }
    return TargetCheck.Allowed(Host.Name(asciiLowercase(name)))
}

private fun asciiLowercase(s: String): String =
    buildString(s.length) { for (c in s) append(if (c in 'A'..'Z') c + ('a' - 'A') else c) }

/**
 * Special-use names that resolve on the node's own network (RFC 6761, 6762, 8375, ICANN
 * `.internal`, and the common home-router `.lan`). The zone apex itself counts too.
 */
private val LOCAL_SUFFIXES = listOf("localhost", "local", "home.arpa", "internal", "lan")

/** True for `localhost`, `*.localhost`, `*.local`, `*.home.arpa`, `*.internal`, `*.lan` (any case, trailing dot or not). */
fun isLocalName(name: String): Boolean {
    val n = asciiLowercase(name.removeSuffix("."))
    return LOCAL_SUFFIXES.any { n == it || n.endsWith(".$it") }
}
