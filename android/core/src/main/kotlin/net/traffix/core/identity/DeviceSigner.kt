package net.traffix.core.identity

import net.traffix.core.protocol.Handshake
import net.traffix.core.protocol.KeyAlg
import net.traffix.core.util.Bytes

/**
 * The device key: signs challenges, never leaves its store.
 *
 * On Android the app implements this with an Android Keystore key (ECDSA P-256, hardware-backed
 * where the device has it, with a Key Attestation chain for PAIR); tests use a software key.
 * Implementations must be safe to call from any thread.
 */
interface DeviceSigner {
    val keyAlg: KeyAlg

    /** Ed25519: 32 raw bytes; ECDSA P-256: the 65-byte uncompressed point. */
    val publicKey: Bytes

    /**
     * The signature over [message]: Ed25519 64 raw bytes, ECDSA P-256 ASN.1 DER over SHA-256.
     *
     * @throws SigningException when the key store cannot sign (key lost, user locked it out).
     */
    fun sign(message: ByteArray): Bytes

    /** The Key Attestation chain, leaf first, for PAIR; empty when the key has none. */
    fun attestation(): List<Bytes> = emptyList()

    /**
     * Called once per pairing code, before the first connection of an unpaired device dials,
     * with the attestation challenge of docs/protocol.md
     * ([net.traffix.core.protocol.Handshake.attestationChallenge] of the link's pin and code). A
     * Keystore signer creates its key here with that challenge (SECURITY.md §5: the chain must
     * carry it), which can take seconds in StrongBox — outside the 10 s handshake. The public
     * key, and so the device id, may change. HELLO therefore carries no device id while pairing.
     *
     * @throws SigningException when no key can be made.
     */
    fun prepareForPairing(attestationChallenge: Bytes) {}
}

/** The key store could not sign; the agent backs off and reports it, it does not crash. */
class SigningException(message: String, cause: Throwable? = null) : Exception(message, cause)

/** The device id of this signer's key (docs/protocol.md "Device id"). */
fun DeviceSigner.deviceId(): Bytes = Handshake.deviceId(keyAlg, publicKey)

/** Signs the challenge [nonce] for the server whose certificate has [pin]. */
fun DeviceSigner.signChallenge(pin: Bytes, nonce: Bytes): Bytes =
    sign(Handshake.challengeMessage(pin, deviceId(), nonce))
