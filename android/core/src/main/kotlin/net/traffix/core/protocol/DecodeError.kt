package net.traffix.core.protocol

/**
 * Why a message is not a valid frame. [code] is the stable name the shared vectors use
 * (`tests/vectors/frames.json`, the same names as the Rust `ProtocolError`); [message] says
 * what was wrong in words, for the ERROR 5 sent back and for logs.
 */
sealed class DecodeError(val code: String) {
    abstract val message: String

    override fun toString(): String = "$code: $message"

    data class Short(val len: Int) : DecodeError("short") {
        override val message get() = "frame of $len bytes is shorter than the $HEADER_LEN-byte header"
    }

    data class TooLarge(val len: Int) : DecodeError("too_large") {
        override val message get() = "frame of $len bytes exceeds the $MAX_FRAME_LEN-byte limit"
    }

    data class UnknownType(val type: Int) : DecodeError("unknown_type") {
        override val message get() = "unknown frame type 0x%02x".format(type)
    }

    data class NeedsConnectionStream(val frame: String) : DecodeError("needs_connection_stream") {
        override val message get() = "$frame frame must use stream 0"
    }

    data class NeedsStream(val frame: String) : DecodeError("needs_stream") {
        override val message get() = "$frame frame must use a non-zero stream id"
    }

    data class Truncated(val frame: String, val what: String) : DecodeError("truncated") {
        override val message get() = "$frame frame is truncated: $what"
    }

    data class FieldLength(val frame: String, val tag: Int, val len: Int, val expected: Int) :
        DecodeError("field_length") {
        override val message get() = "$frame field $tag has length $len, expected $expected"
    }

    data class RepeatedField(val frame: String, val tag: Int) : DecodeError("repeated_field") {
        override val message get() = "$frame field $tag repeats"
    }

    data class MissingField(val frame: String, val tag: Int) : DecodeError("missing_field") {
        override val message get() = "$frame lacks required field $tag"
    }

    data class BadField(val frame: String, val tag: Int, val why: String) : DecodeError("bad_field") {
        override val message get() = "$frame field $tag is not valid: $why"
    }

    data class BadAddress(val why: String) : DecodeError("bad_address") {
        override val message get() = "bad target address: $why"
    }

    object EmptyData : DecodeError("empty_data") {
        override val message get() = "empty DATA frame without FIN"
    }

    companion object {
        /** Every [code], in the order of the vectors' description. */
        val CODES = listOf(
            "short", "too_large", "unknown_type", "needs_connection_stream", "needs_stream", "truncated",
            "field_length", "repeated_field", "missing_field", "bad_field", "bad_address", "empty_data",
        )
    }
}

/** The outcome of [FrameCodec.decode]: a frame, or the reason the message is not one. */
sealed class DecodeResult {
    data class Ok(val frame: Frame) : DecodeResult()

    data class Err(val error: DecodeError) : DecodeResult()
}
