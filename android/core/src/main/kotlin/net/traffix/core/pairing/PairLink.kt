package net.traffix.core.pairing

import java.net.URLDecoder
import net.traffix.core.protocol.Handshake
import net.traffix.core.util.Bytes
import net.traffix.core.util.Hex

/**
 * `traffix://pair?server=HOST:PORT&pin=HEX&code=CODE[&insecure=1]`: what the dashboard's QR code
 * and its copy button hold (the same parser as the Rust agent's `PairLink::parse`).
 *
 * [server] is where the tunnel goes (`wss://server/v1/tunnel`), [pin] the SHA-256 of the server
 * certificate's SubjectPublicKeyInfo — the trust anchor — and [code] the one-time pairing code.
 * [insecure] marks a development server on plain `ws://`; the app refuses it.
 */
data class PairLink(val server: String, val pin: Bytes, val code: String, val insecure: Boolean = false) {
    init {
        require(pin.size == Handshake.PIN_LEN) { "pin has ${pin.size} bytes, not ${Handshake.PIN_LEN}" }
    }

    /** The host part of [server], without IPv6 brackets (the TLS server name). */
    val host: String get() = splitServer(server)?.first ?: server

    /** The port part of [server]. */
    val port: Int get() = splitServer(server)?.second ?: 0

    fun toLink(): String =
        "traffix://pair?server=$server&pin=${pin.hex()}&code=$code" + if (insecure) "&insecure=1" else ""

    /** The link without its code: safe for logs. */
    override fun toString(): String = "PairLink(server=$server, pin=${pin.hex()}, insecure=$insecure)"

    companion object {
        private const val PREFIX = "traffix://pair?"

        /** Parses a scanned or pasted link; the error says what is wrong in words an owner can act on. */
        fun parse(text: String): Result {
            val link = text.trim()
            if (!link.startsWith(PREFIX, ignoreCase = true)) {
                return Result.Invalid("a pairing link starts with traffix://pair?")
            }
            var server: String? = null
            var pin: Bytes? = null
            var code: String? = null
            var insecure = false
            for (pair in link.substring(PREFIX.length).split('&')) {
                if (pair.isEmpty()) continue
                val eq = pair.indexOf('=')
                val key = if (eq < 0) pair else pair.substring(0, eq)
                val value =
                    try {
                        URLDecoder.decode(if (eq < 0) "" else pair.substring(eq + 1), "UTF-8")
                    } catch (e: IllegalArgumentException) {
                        return Result.Invalid("the link has a malformed %-escape in $key")
                    }
                when (key) {
                    "server" -> server = value
                    "pin" -> pin = parsePin(value) ?: return Result.Invalid("pin must be 64 hex digits")
                    "code" -> code = value
                    "insecure" -> insecure = value == "1"
                }
            }
            val s = server ?: return Result.Invalid("the link lacks server=")
            val port = splitServer(s)?.second
            if (port == null || port == 0) return Result.Invalid("server \"$s\" in the link must be HOST:PORT")
            val p = pin ?: return Result.Invalid("the link lacks pin=")
            val c = code?.takeIf { it.isNotEmpty() } ?: return Result.Invalid("the link lacks code=")
            return Result.Ok(PairLink(s, p, c, insecure))
        }

        /** 64 hex digits (either case) → 32 bytes, else null. */
        fun parsePin(text: String): Bytes? {
            if (text.length != Handshake.PIN_LEN * 2 || !text.all { it in '0'..'9' || it in 'a'..'f' || it in 'A'..'F' }) {
                return null
            }
            return Bytes.of(Hex.decode(text.lowercase()))
        }

        /** `host:port` or `[v6]:port` → (host without brackets, port), else null. */
        internal fun splitServer(server: String): kotlin.Pair<String, Int>? {
            val colon = server.lastIndexOf(':')
            if (colon <= 0) return null
            val digits = server.substring(colon + 1)
            if (digits.isEmpty() || digits.length > 5 || digits.any { it !in '0'..'9' }) return null
            val port = digits.toInt().takeIf { it <= 0xffff } ?: return null
            var host = server.substring(0, colon)
            if (host.startsWith("[") && host.endsWith("]")) host = host.substring(1, host.length - 1)
            if (host.isEmpty()) return null
            return kotlin.Pair(host, port)
        }
    }

    sealed class Result {
        data class Ok(val link: PairLink) : Result()

        data class Invalid(val why: String) : Result()
    }
}
