package net.traffix.core.net

/**
 * An IP address as a plain value: no name resolution, no platform quirks.
 *
 * `java.net.InetAddress` is not used for policy decisions because it turns an IPv4-mapped IPv6
 * address into an `Inet4Address` and its `getByName` resolves anything that is not a literal.
 * Parsing and printing follow Rust's `std::net` exactly (the server and the Linux agent are
 * written in Rust and share test vectors with this core): IPv4 is four decimal parts 0–255
 * without leading zeros; IPv6 is RFC 4291 text with 1–4 hex digits per group, at most one `::`
 * standing for at least one zero group, and an optional dotted IPv4 in the last 32 bits;
 * printing is RFC 5952 (lowercase, the first longest run of two or more zero groups as `::`)
 * with IPv4-mapped addresses as `::ffff:a.b.c.d`.
 */
sealed class IpAddr {
    /** Network byte order: 4 bytes for IPv4, 16 for IPv6. */
    abstract fun toByteArray(): ByteArray

    abstract val isUnspecified: Boolean

    /** An IPv4 address; [bits] holds the 32 bits in network order (`a.b.c.d` = `a shl 24 or …`). */
    data class V4(val bits: Int) : IpAddr() {
        override fun toByteArray(): ByteArray =
            byteArrayOf((bits ushr 24).toByte(), (bits ushr 16).toByte(), (bits ushr 8).toByte(), bits.toByte())

        override val isUnspecified: Boolean get() = bits == 0

        /** `::ffff:a.b.c.d`. */
        fun toIpv6Mapped(): V6 = V6(0L, 0xffff_0000_0000L or (bits.toLong() and 0xffff_ffffL))

        override fun toString(): String =
            "${bits ushr 24}.${(bits ushr 16) and 0xff}.${(bits ushr 8) and 0xff}.${bits and 0xff}"
    }

    /** An IPv6 address; [hi] holds bits 127..64 and [lo] bits 63..0, in network order. */
    data class V6(val hi: Long, val lo: Long) : IpAddr() {
        override fun toByteArray(): ByteArray {
            val out = ByteArray(16)
            for (i in 0 until 8) {
                out[i] = (hi ushr (56 - 8 * i)).toByte()
                out[8 + i] = (lo ushr (56 - 8 * i)).toByte()
            }
            return out
        }

        override val isUnspecified: Boolean get() = hi == 0L && lo == 0L

        /** The eight 16-bit groups. */
        fun segments(): IntArray = IntArray(8) { i ->
            val word = if (i < 4) hi else lo
            ((word ushr (48 - 16 * (i % 4))) and 0xffff).toInt()
        }

        /** The low 32 bits as IPv4. */
        fun last32(): V4 = V4(lo.toInt())

        /** The IPv4 of `::ffff:a.b.c.d`, or null for any other address. */
        fun toIpv4Mapped(): V4? = if (hi == 0L && (lo ushr 32) == 0xffffL) last32() else null

        override fun toString(): String {
            toIpv4Mapped()?.let { return "::ffff:$it" }
            val seg = segments()
            var bestStart = 0
            var bestLen = 0
            var curStart = 0
            var curLen = 0
            for (i in seg.indices) {
                if (seg[i] == 0) {
                    if (curLen == 0) curStart = i
                    curLen++
                    if (curLen > bestLen) {
                        bestStart = curStart
                        bestLen = curLen
                    }
                } else {
                    curLen = 0
                }
            }
            fun part(from: Int, to: Int) = (from until to).joinToString(":") { Integer.toHexString(seg[it]) }
            return if (bestLen > 1) {
                part(0, bestStart) + "::" + part(bestStart + bestLen, 8)
            } else {
                part(0, 8)
            }
        }
    }

    companion object {
        /** An IPv4 or IPv6 literal (no brackets, no zone), or null. */
        fun parse(text: String): IpAddr? = parseV4(text) ?: parseV6(text)

        fun parseV4(text: String): V4? = Parser(text).parseWith { it.readIpv4() }?.let { V4(it) }

        fun parseV6(text: String): V6? = Parser(text).parseWith { it.readIpv6() }

        /** From 4 or 16 bytes in network order. */
        fun fromBytes(bytes: ByteArray): IpAddr {
            return when (bytes.size) {
                4 -> V4(beInt(bytes, 0))
                16 -> V6(beLong(bytes, 0), beLong(bytes, 8))
                else -> throw IllegalArgumentException("an IP address has 4 or 16 bytes, not ${bytes.size}")
            }
        }

        fun v4(a: Int, b: Int, c: Int, d: Int): V4 {
            require(a in 0..255 && b in 0..255 && c in 0..255 && d in 0..255) { "octet out of range" }
            return V4((a shl 24) or (b shl 16) or (c shl 8) or d)
        }

        private fun beInt(b: ByteArray, at: Int): Int =
            ((b[at].toInt() and 0xff) shl 24) or ((b[at + 1].toInt() and 0xff) shl 16) or
                ((b[at + 2].toInt() and 0xff) shl 8) or (b[at + 3].toInt() and 0xff)

        private fun beLong(b: ByteArray, at: Int): Long =
            (beInt(b, at).toLong() shl 32) or (beInt(b, at + 4).toLong() and 0xffff_ffffL)
    }
}

/** An IP endpoint. Prints as `a.b.c.d:port` or `[v6]:port`. */
data class SocketAddr(val ip: IpAddr, val port: Int) {
    init {
        require(port in 0..0xffff) { "port $port out of range" }
    }

    override fun toString(): String = if (ip is IpAddr.V6) "[$ip]:$port" else "$ip:$port"

    companion object {
        /** `a.b.c.d:port` or `[v6]:port` (no zone), or null. */
        fun parse(text: String): SocketAddr? {
            val colon = text.lastIndexOf(':')
            if (colon < 0) return null
            val host = text.substring(0, colon)
            val port = Parser(text.substring(colon + 1)).parseWith { it.readNumber(10, Int.MAX_VALUE, true, 0xffff) } ?: return null
            val ip: IpAddr =
                if (host.startsWith("[") && host.endsWith("]")) {
                    IpAddr.parseV6(host.substring(1, host.length - 1))
                } else {
                    IpAddr.parseV4(host)
                } ?: return null
            return SocketAddr(ip, port)
        }
    }
}

/** A port of the parser in Rust's `core::net::parser`, so both accept exactly the same text. */
private class Parser(private val s: String) {
    private var pos = 0

    fun <T : Any> parseWith(read: (Parser) -> T?): T? {
        val r = read(this)
        return if (r != null && pos == s.length) r else null
    }

    private inline fun <T : Any> atomically(read: () -> T?): T? {
        val saved = pos
        val r = read()
        if (r == null) pos = saved
        return r
    }

    private fun readGiven(c: Char): Unit? =
        if (pos < s.length && s[pos] == c) {
            pos++
            Unit
        } else {
            null
        }

    private fun peek(): Char? = if (pos < s.length) s[pos] else null

    private fun <T : Any> readSeparator(sep: Char, index: Int, inner: () -> T?): T? = atomically {
        if (index > 0 && readGiven(sep) == null) null else inner()
    }

    private fun digit(radix: Int): Int? = atomically {
        val c = peek()
        val d =
            when {
                c == null -> -1
                c in '0'..'9' -> c - '0'
                radix == 16 && c in 'a'..'f' -> c - 'a' + 10
                radix == 16 && c in 'A'..'F' -> c - 'A' + 10
                else -> -1
            }
        if (d >= 0) {
            pos++
            d
        } else {
            null
        }
    }

    /** Rust's `read_number`: at most [maxDigits] digits, value at most [max]. */
    fun readNumber(radix: Int, maxDigits: Int, allowZeroPrefix: Boolean, max: Int): Int? = atomically {
        var result = 0
        var count = 0
        val leadingZero = peek() == '0'
        var ok = true
        while (true) {
            val d = digit(radix) ?: break
            result = result * radix + d
            count++
            if (result > max || count > maxDigits) {
                ok = false
                break
            }
        }
        when {
            !ok || count == 0 -> null
            !allowZeroPrefix && leadingZero && count > 1 -> null
            else -> result
        }
    }

    fun readIpv4(): Int? = atomically {
        var bits = 0
        var ok = true
        for (i in 0 until 4) {
            val octet = readSeparator('.', i) { readNumber(10, 3, false, 0xff) }
            if (octet == null) {
                ok = false
                break
            }
            bits = (bits shl 8) or octet
        }
        if (ok) bits else null
    }

    /** Reads up to `groups.size` groups; returns (count, whether the last two were an IPv4). */
    private fun readGroups(groups: IntArray): Pair<Int, Boolean> {
        val limit = groups.size
        for (i in 0 until limit) {
            if (i < limit - 1) {
                val v4 = readSeparator(':', i) { readIpv4() }
                if (v4 != null) {
                    groups[i] = v4 ushr 16
                    groups[i + 1] = v4 and 0xffff
                    return Pair(i + 2, true)
                }
            }
            val g = readSeparator(':', i) { readNumber(16, 4, true, 0xffff) } ?: return Pair(i, false)
            groups[i] = g
        }
        return Pair(limit, false)
    }

    fun readIpv6(): IpAddr.V6? = atomically {
        val head = IntArray(8)
        val (headSize, headIpv4) = readGroups(head)
        when {
            headSize == 8 -> toV6(head)
            headIpv4 -> null
            readGiven(':') == null || readGiven(':') == null -> null
            else -> {
                val tail = IntArray(8 - (headSize + 1))
                val (tailSize, _) = readGroups(tail)
                val groups = head.copyOf()
                for (k in 0 until tailSize) groups[8 - tailSize + k] = tail[k]
                toV6(groups)
            }
        }
    }

    private fun toV6(g: IntArray): IpAddr.V6 {
        var hi = 0L
        var lo = 0L
        for (i in 0 until 4) hi = (hi shl 16) or g[i].toLong()
        for (i in 4 until 8) lo = (lo shl 16) or g[i].toLong()
        return IpAddr.V6(hi, lo)
    }
}
