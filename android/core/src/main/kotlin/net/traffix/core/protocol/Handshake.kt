package net.traffix.core.protocol

import java.security.MessageDigest
import net.traffix.core.util.Bytes

/** The handshake rules of docs/protocol.md that both sides compute the same way. */
object Handshake {
    private val DEVICE_ID_LABEL = "traffix-device-id-v1".toByteArray(Charsets.US_ASCII)

    /** `"traffix-challenge-v1" ‖ 0x00`. */
    private val CHALLENGE_LABEL = "traffix-challenge-v1\u0000".toByteArray(Charsets.US_ASCII)

    /** `"traffix-attest-v1"`, the label of the attestation challenge. */
    private val ATTEST_LABEL = "traffix-attest-v1".toByteArray(Charsets.US_ASCII)

    /** Length of a pin: SHA-256 of the server certificate's SubjectPublicKeyInfo. */
    const val PIN_LEN = 32

    /** A device's id: the first 16 bytes of `SHA-256("traffix-device-id-v1" ‖ key_alg ‖ public_key)`. */
    fun deviceId(alg: KeyAlg, publicKey: Bytes): Bytes {
        val md = MessageDigest.getInstance("SHA-256")
        md.update(DEVICE_ID_LABEL)
        md.update(alg.wire.toByte())
        md.update(publicKey.toByteArray())
        return Bytes.of(md.digest(), 0, DEVICE_ID_LEN)
    }

    /**
     * The bytes a device signs in PROOF and PAIR:
     * `"traffix-challenge-v1" ‖ 0x00 ‖ pin (32) ‖ device_id (16) ‖ nonce (32)`. Binding the pin
     * makes a signature useless on any other TLS endpoint.
     */
    fun challengeMessage(pin: Bytes, deviceId: Bytes, nonce: Bytes): ByteArray {
        require(pin.size == PIN_LEN) { "pin has ${pin.size} bytes, not $PIN_LEN" }
        require(deviceId.size == DEVICE_ID_LEN) { "device id has ${deviceId.size} bytes, not $DEVICE_ID_LEN" }
        require(nonce.size == NONCE_LEN) { "nonce has ${nonce.size} bytes, not $NONCE_LEN" }
        val m = ByteArray(CHALLENGE_LABEL.size + PIN_LEN + DEVICE_ID_LEN + NONCE_LEN)
        var at = 0
        CHALLENGE_LABEL.copyInto(m, at)
        at += CHALLENGE_LABEL.size
        pin.copyInto(m, at)
        at += PIN_LEN
        deviceId.copyInto(m, at)
        at += DEVICE_ID_LEN
        nonce.copyInto(m, at)
        return m
    }

    /**
     * The Android Key Attestation challenge for pairing with [code] at the server whose pin is
     * [pin]: `SHA-256("traffix-attest-v1" ‖ pin (32) ‖ code (UTF-8))`, with [code] exactly as the
     * pairing link has it (and as PAIR sends it). The app makes its Keystore key with this
     * challenge before it dials, so the slow key generation never runs inside the handshake.
     */
    fun attestationChallenge(pin: Bytes, code: String): Bytes {
        require(pin.size == PIN_LEN) { "pin has ${pin.size} bytes, not $PIN_LEN" }
        val md = MessageDigest.getInstance("SHA-256")
        md.update(ATTEST_LABEL)
        md.update(pin.toByteArray())
        md.update(code.toByteArray(Charsets.UTF_8))
        return Bytes.of(md.digest())
    }

    /** The outcome of version negotiation: the version both speak, or why there is none. */
    sealed class Negotiated {
        data class Agreed(val version: Int) : Negotiated()

        /** [message] names both ranges and, when one side is too old, says which to upgrade. */
        data class NoCommonVersion(val message: String) : Negotiated()
    }

    /**
     * The version a server speaking [serverMin]..[serverMax] picks for a node offering
     * [nodeMin]..[nodeMax]: the highest in both ranges (the same rule and words as the server,
     * so a node can explain an ERROR 1 to its owner).
     */
    fun negotiateVersion(
        nodeMin: Int,
        nodeMax: Int,
        serverMin: Int = MIN_PROTOCOL_VERSION,
        serverMax: Int = PROTOCOL_VERSION,
    ): Negotiated {
        if (nodeMin > nodeMax) return Negotiated.NoCommonVersion("node sent an empty version range $nodeMin..$nodeMax")
        val hi = minOf(nodeMax, serverMax)
        val lo = maxOf(nodeMin, serverMin)
        if (hi >= lo) return Negotiated.Agreed(hi)
        return if (nodeMax < serverMin) {
            Negotiated.NoCommonVersion(
                "node speaks protocol $nodeMin..$nodeMax but this server needs $serverMin..$serverMax: upgrade the node",
            )
        } else {
            Negotiated.NoCommonVersion(
                "node speaks protocol $nodeMin..$nodeMax but this server only speaks $serverMin..$serverMax: " +
                    "upgrade the server",
            )
        }
    }
}
