package net.traffix.core.support

import java.time.Instant
import java.time.ZoneOffset
import java.time.format.DateTimeFormatter

/**
 * The app's recent log for support: the last [maxLines] lines (at most [maxBytes] in all),
 * every line redacted on the way in, so an export never holds a secret. Thread-safe; the
 * agent logs from several threads.
 */
class LogRing(private val maxLines: Int = 500, private val maxBytes: Int = 128 * 1024) {
    private val lines = ArrayDeque<String>()
    private var bytes = 0

    init {
        require(maxLines > 0 && maxBytes > 0) { "empty ring" }
    }

    /** Adds one line at [atMillis] (wall clock); long lines are cut to 1,000 characters. */
    fun add(atMillis: Long, level: String, message: String) {
        val text = Redactor.redact(message).replace('\n', ' ').take(MAX_LINE)
        val line = "${STAMP.format(Instant.ofEpochMilli(atMillis))} ${level.take(5)} $text"
        synchronized(this) {
            lines.addLast(line)
            bytes += line.length + 1
            while (lines.size > maxLines || bytes > maxBytes) {
                val old = lines.removeFirst()
                bytes -= old.length + 1
            }
        }
    }

    fun snapshot(): List<String> = synchronized(this) { lines.toList() }

    /** The export: a header the owner can read (app and OS versions), then the lines. */
    fun export(header: List<String>): String =
        (header.map { "# ${Redactor.redact(it)}" } + snapshot()).joinToString("\n", postfix = "\n")

    companion object {
        const val MAX_LINE = 1_000
        private val STAMP: DateTimeFormatter = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC)
    }
}

/**
 * Takes secrets out of a log line: pairing codes, pins and whole pairing links, anything
 * after `code=`, `pin=`, `token=`, `key=`, `secret=`, `password=` or `nonce=`, long hex runs
 * (keys, signatures, device ids), long base64 runs (certificates, attestation) and bearer
 * tokens. What is left says what happened, not with which credentials.
 */
object Redactor {
    private val rules: List<Pair<Regex, String>> =
        listOf(
            Regex("traffix://pair\\?\\S*", RegexOption.IGNORE_CASE) to "traffix://pair?[redacted]",
            Regex("\\b(code|pin|token|key|secret|password|passwd|nonce|signature|sig)([=:]\\s*)(\"[^\"]*\"|\\S+)", RegexOption.IGNORE_CASE) to "$1$2[redacted]",
            Regex("\\bBearer\\s+\\S+", RegexOption.IGNORE_CASE) to "Bearer [redacted]",
            Regex("\\b[0-9a-fA-F]{32,}\\b") to "[hex]",
            Regex("[A-Za-z0-9+/]{40,}={0,2}") to "[base64]",
        )

    fun redact(text: String): String = rules.fold(text) { acc, (re, with) -> re.replace(acc, with) }
}
