package net.traffix.core.util

/**
 * An immutable byte string with value equality, so frames holding keys, nonces and payloads can
 * be data classes. Construction copies; [toByteArray] copies; nothing else can change the bytes.
 */
class Bytes private constructor(private val data: ByteArray) {
    val size: Int get() = data.size

    operator fun get(index: Int): Byte = data[index]

    fun isEmpty(): Boolean = data.isEmpty()

    fun toByteArray(): ByteArray = data.copyOf()

    /** Writes the bytes into [dest] at [offset] without an intermediate copy. */
    fun copyInto(dest: ByteArray, offset: Int) {
        System.arraycopy(data, 0, dest, offset, data.size)
    }

    fun hex(): String = Hex.encode(data)

    /** Writes the bytes to [out] without an intermediate copy. */
    fun writeTo(out: java.io.OutputStream) {
        out.write(data)
    }

    override fun equals(other: Any?): Boolean = other is Bytes && data.contentEquals(other.data)

    override fun hashCode(): Int = data.contentHashCode()

    /** Hex, shortened for large payloads so a log line or a test failure stays readable. */
    override fun toString(): String =
        if (data.size <= 64) hex() else "${Hex.encode(data.copyOf(32))}… (${data.size} bytes)"

    companion object {
        val EMPTY = Bytes(ByteArray(0))

        fun of(array: ByteArray): Bytes = Bytes(array.copyOf())

        fun of(array: ByteArray, from: Int, to: Int): Bytes = Bytes(array.copyOfRange(from, to))

        fun ofHex(hex: String): Bytes = Bytes(Hex.decode(hex))

        /** Takes ownership of [array]: the caller must not change it afterwards. */
        internal fun wrap(array: ByteArray): Bytes = Bytes(array)
    }
}

/** Lowercase hexadecimal, as the vectors and logs write bytes. */
object Hex {
    private const val DIGITS = "0123456789abcdef"

    fun encode(bytes: ByteArray): String {
        val sb = StringBuilder(bytes.size * 2)
        for (b in bytes) {
            val v = b.toInt() and 0xff
            sb.append(DIGITS[v ushr 4]).append(DIGITS[v and 0x0f])
        }
        return sb.toString()
    }

    /** @throws IllegalArgumentException on an odd length or a non-hex character. */
    fun decode(hex: String): ByteArray {
        require(hex.length % 2 == 0) { "hex of odd length ${hex.length}" }
        val out = ByteArray(hex.length / 2)
        for (i in out.indices) {
            val hi = digit(hex[2 * i])
            val lo = digit(hex[2 * i + 1])
            require(hi >= 0 && lo >= 0) { "not hex: ${hex.substring(2 * i, 2 * i + 2)}" }
            out[i] = ((hi shl 4) or lo).toByte()
        }
        return out
    }

    /** The value of an ASCII hex digit, or -1 (no other Unicode digits, unlike Character.digit). */
    fun digit(c: Char): Int =
        when (c) {
            in '0'..'9' -> c - '0'
            in 'a'..'f' -> c - 'a' + 10
            in 'A'..'F' -> c - 'A' + 10
            else -> -1
        }
}
