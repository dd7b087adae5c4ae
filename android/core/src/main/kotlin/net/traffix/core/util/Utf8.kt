package net.traffix.core.util

/** [text] cut to at most [max] bytes of UTF-8 without splitting a character. */
internal fun cutUtf8(text: String, max: Int): String {
    val b = text.toByteArray(Charsets.UTF_8)
    if (b.size <= max) return text
    var end = max
    while (end > 0 && (b[end].toInt() and 0xc0) == 0x80) end--
    return String(b, 0, end, Charsets.UTF_8)
}
