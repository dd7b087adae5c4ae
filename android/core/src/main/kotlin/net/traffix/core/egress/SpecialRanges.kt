package net.traffix.core.egress

import net.traffix.core.net.IpAddr

/*
 * The special-purpose address table of SECURITY.md §1, as an explicit prefix list tested at
 * every boundary (tests/vectors/egress.json). First match wins.
 */

private class V4Range(val text: String) {
    val net: Int
    val len: Int

    init {
        val (addr, l) = text.split('/')
        net = (IpAddr.parseV4(addr) ?: error("bad table entry $text")).bits
        len = l.toInt()
        check(net and mask(len).inv() == 0) { "$text has host bits set" }
    }

    companion object {
        fun mask(len: Int): Int = if (len <= 0) 0 else -1 shl (32 - minOf(len, 32))
    }
}

/** How an IPv6 range decides. */
private enum class V6Rule {
    /** Refused whole. */
    REFUSE,

    /** `::ffff:0:0/96`, `::/96`, `64:ff9b::/96`: decide on the IPv4 in the last 32 bits. */
    EMBEDDED_LAST32,

    /** `2002::/16`: decide on the IPv4 in bits 16..48. */
    SIX_TO_FOUR,

    /** `2001::/32`: the client IPv4's range if it has one, else fall through to `2001::/23`. */
    TEREDO,
}

private class V6Range(val text: String, val rule: V6Rule) {
    val net: IpAddr.V6
    val len: Int

    init {
        val (addr, l) = text.split('/')
        net = IpAddr.parseV6(addr) ?: error("bad table entry $text")
        len = l.toInt()
        check(hostBitsClear(net, len)) { "$text has host bits set" }
    }

    private fun hostBitsClear(a: IpAddr.V6, len: Int): Boolean {
        val (mh, ml) = v6Mask(len)
        return a.hi and mh.inv() == 0L && a.lo and ml.inv() == 0L
    }
}

/** IPv4 special-purpose ranges; the /32 broadcast comes before 240.0.0.0/4 to be reported by name. */
private val SPECIAL_V4: List<V4Range> = listOf(
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "192.175.48.0/24",
    // 198.18.0.0/15, not 192.18 (a common typo).
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "255.255.255.255/32", "240.0.0.0/4",
).map(::V4Range)

/** IPv6 special-purpose ranges: `::/128` and `::1/128` before `::/96`, Teredo before `2001::/23`. */
private val SPECIAL_V6: List<V6Range> = listOf(
    V6Range("::/128", V6Rule.REFUSE),
    V6Range("::1/128", V6Rule.REFUSE),
    V6Range("::ffff:0:0/96", V6Rule.EMBEDDED_LAST32),
    // IPv4-translated (SIIT, RFC 6052 §2.1): refused whole, as no public target needs it.
    V6Range("::ffff:0:0:0/96", V6Rule.REFUSE),
    V6Range("::/96", V6Rule.EMBEDDED_LAST32),
    V6Range("64:ff9b::/96", V6Rule.EMBEDDED_LAST32),
    V6Range("64:ff9b:1::/48", V6Rule.REFUSE),
    V6Range("100::/64", V6Rule.REFUSE),
    V6Range("2001::/32", V6Rule.TEREDO),
    V6Range("2001::/23", V6Rule.REFUSE),
    V6Range("2001:db8::/32", V6Rule.REFUSE),
    V6Range("3fff::/20", V6Rule.REFUSE),
    V6Range("2002::/16", V6Rule.SIX_TO_FOUR),
    V6Range("5f00::/16", V6Rule.REFUSE),
    V6Range("fc00::/7", V6Rule.REFUSE),
    V6Range("fe80::/10", V6Rule.REFUSE),
    V6Range("fec0::/10", V6Rule.REFUSE),
    V6Range("ff00::/8", V6Rule.REFUSE),
)

/** Every range text of the table, IPv4 then IPv6 (for coverage checks). */
val SPECIAL_RANGE_TEXTS: List<String> = SPECIAL_V4.map { it.text } + SPECIAL_V6.map { it.text }

/**
 * The special-purpose range containing [ip] as its CIDR text, or null if the address is public.
 *
 * Embedded IPv4 is decoded and re-checked for `::ffff:0:0/96` (mapped), `::/96` (compatible),
 * `64:ff9b::/96` (NAT64, the normal path on IPv6-only mobile networks) and `2002::/16` (6to4):
 * allowed when the embedded IPv4 is public, else reported as that IPv4's range. Teredo
 * `2001::/32` reports the client IPv4's range (last 32 bits inverted) when it has one; every
 * other address in `2001::/23`, Teredo with a public client included, reports `2001::/23`.
 */
fun specialRange(ip: IpAddr): String? =
    when (ip) {
        is IpAddr.V4 -> specialRangeV4(ip.bits)
        is IpAddr.V6 -> specialRangeV6(ip)
    }

private fun specialRangeV4(bits: Int): String? = SPECIAL_V4.firstOrNull { v4In(bits, it.net, it.len) }?.text

private fun specialRangeV6(ip: IpAddr.V6): String? {
    for (range in SPECIAL_V6) {
        if (!v6In(ip, range.net, range.len)) continue
        when (range.rule) {
            V6Rule.REFUSE -> return range.text
            V6Rule.EMBEDDED_LAST32 -> return specialRangeV4(ip.lo.toInt())
            V6Rule.SIX_TO_FOUR -> return specialRangeV4(sixToFourV4(ip))
            V6Rule.TEREDO -> specialRangeV4(teredoClientV4(ip))?.let { return it }
        }
    }
    return null
}

/** The IPv4 in bits 16..48 of a 6to4 address. */
private fun sixToFourV4(ip: IpAddr.V6): Int = (ip.hi ushr 16).toInt()

/** The Teredo client's IPv4: the last 32 bits, inverted. */
private fun teredoClientV4(ip: IpAddr.V6): Int = ip.lo.toInt().inv()

/**
 * The IPv4 a packet to [ip] ends up at, for the embedded forms of the table (mapped,
 * compatible, NAT64, 6to4, Teredo); `::` and `::1` are not read as IPv4-compatible.
 */
internal fun embeddedV4(ip: IpAddr.V6): Int? {
    val top96Low = ip.lo ushr 32
    val mapped = ip.hi == 0L && top96Low == 0xffffL
    val compat = ip.hi == 0L && top96Low == 0L && ip.lo > 1
    val nat64 = ip.hi == 0x0064_ff9b_0000_0000L && top96Low == 0L
    return when {
        mapped || compat || nat64 -> ip.lo.toInt()
        (ip.hi ushr 48) == 0x2002L -> sixToFourV4(ip)
        (ip.hi ushr 32) == 0x2001_0000L -> teredoClientV4(ip)
        else -> null
    }
}

internal fun v4In(ip: Int, net: Int, len: Int): Boolean {
    val m = V4Range.mask(len)
    return ip and m == net and m
}

/** The (hi, lo) masks of a /[len] IPv6 prefix (lengths above 128 read as 128). */
private fun v6Mask(len: Int): kotlin.Pair<Long, Long> {
    val l = len.coerceIn(0, 128)
    val hi = if (l == 0) 0L else if (l >= 64) -1L else -1L shl (64 - l)
    val lo = if (l <= 64) 0L else if (l == 128) -1L else -1L shl (128 - l)
    return kotlin.Pair(hi, lo)
}

internal fun v6In(ip: IpAddr.V6, net: IpAddr.V6, len: Int): Boolean {
    val (mh, ml) = v6Mask(len)
    return ip.hi and mh == net.hi and mh && ip.lo and ml == net.lo and ml
}

/**
 * [ip] is inside the node's network, also through an embedded IPv4 (a NAT64 hairpin to the
 * node's own public address) or an IPv4-mapped network entry.
 */
internal fun inOwnNetwork(ip: IpAddr, net: OwnNetwork): Boolean {
    val n = net.addr
    return when {
        ip is IpAddr.V4 && n is IpAddr.V4 -> v4In(ip.bits, n.bits, net.prefixLen)
        ip is IpAddr.V6 && n is IpAddr.V6 -> v6In(ip, n, net.prefixLen)
        ip is IpAddr.V6 && n is IpAddr.V4 -> embeddedV4(ip)?.let { v4In(it, n.bits, net.prefixLen) } ?: false
        ip is IpAddr.V4 && n is IpAddr.V6 -> v6In(ip.toIpv6Mapped(), n, net.prefixLen)
        else -> false
    }
}

/** The same destination host: equal, or one is the other's embedded IPv4. */
internal fun sameHost(a: IpAddr, b: IpAddr): Boolean {
    if (a == b) return true
    fun asV4(ip: IpAddr): Int? =
        when (ip) {
            is IpAddr.V4 -> ip.bits
            is IpAddr.V6 -> embeddedV4(ip)
        }
    val x = asV4(a) ?: return false
    val y = asV4(b) ?: return false
    return x == y
}
