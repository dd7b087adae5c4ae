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

        /** Parses a scanned or pasted link; the error names what is wrong ([Problem], shown through a string resource). */
        fun parse(text: String): Result {
            val link = text.trim()
            if (!link.startsWith(PREFIX, ignoreCase = true)) {
                return Result.Invalid(Problem.NOT_A_LINK)
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
                        return Result.Invalid(Problem.BAD_ESCAPE, key)
                    }
                when (key) {
                    "server" -> server = value
                    "pin" -> pin = parsePin(value) ?: return Result.Invalid(Problem.BAD_PIN)
                    "code" -> code = value
                    "insecure" -> insecure = value == "1"
                }
            }
            val s = server ?: return Result.Invalid(Problem.NO_SERVER)
            val port = splitServer(s)?.second
            if (port == null || port == 0) return Result.Invalid(Problem.BAD_SERVER, s)
            val p = pin ?: return Result.Invalid(Problem.NO_PIN)
            val c = code?.takeIf { it.isNotEmpty() } ?: return Result.Invalid(Problem.NO_CODE)
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

    /** Why a text is not a pairing link; the app maps each to a string resource (core `UiText`). */
    enum class Problem(internal val english: String) {
        NOT_A_LINK("a pairing link starts with traffix://pair?"),
        BAD_ESCAPE("the link has a malformed %-escape in %s"),
        BAD_PIN("pin must be 64 hex digits"),
        NO_SERVER("the link lacks server="),
        BAD_SERVER("server \"%s\" in the link must be HOST:PORT"),
        NO_PIN("the link lacks pin="),
        NO_CODE("the link lacks code="),
    }

    sealed class Result {
        data class Ok(val link: PairLink) : Result()

        /**
         * What is wrong, and [detail] where the text needs it: the parameter with a bad escape
         * ([Problem.BAD_ESCAPE]) or the server as written ([Problem.BAD_SERVER]).
         */
        data class Invalid(val problem: Problem, val detail: String = "") : Result() {
            /** English, for logs and tests only: the app shows [problem]'s string resource. */
            val why: String get() = problem.english.replace("%s", detail)
        }
    }
}
