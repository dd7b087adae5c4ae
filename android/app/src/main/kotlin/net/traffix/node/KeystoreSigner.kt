package net.traffix.node

import android.content.Context
import android.content.pm.PackageManager
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import android.security.keystore.StrongBoxUnavailableException
import java.io.IOException
import java.math.BigInteger
import java.security.GeneralSecurityException
import java.security.KeyPairGenerator
import java.security.KeyStore
import java.security.PrivateKey
import java.security.ProviderException
import java.security.Signature
import java.security.interfaces.ECPublicKey
import java.security.spec.ECGenParameterSpec
import net.traffix.core.identity.DeviceSigner
import net.traffix.core.identity.SigningException
import net.traffix.core.protocol.KeyAlg
import net.traffix.core.util.Bytes

/**
 * The device key in the Android Keystore: ECDSA P-256, in StrongBox when the phone has one, else
 * in the TEE; it never leaves the secure hardware.
 *
 * The key is made before pairing dials ([prepareForPairing], called by the agent with the
 * attestation challenge of docs/protocol.md: SHA-256 of a label, the server's pin and the one-time
 * pairing code), so the Key Attestation chain sent in PAIR proves the key is hardware-backed *and*
 * fresh (SECURITY.md §5, docs/trust.md), and StrongBox's slow key generation runs outside the
 * handshake. Once paired the
 * same key is used for every PROOF; a new pairing replaces it.
 *
 * Thread-safe: every Keystore access holds [lock] (the agent calls from its own thread).
 */
class KeystoreSigner(private val strongBox: Boolean, private val alias: String = ALIAS) : DeviceSigner {
    override val keyAlg: KeyAlg = KeyAlg.ECDSA_P256

    private val lock = Any()
    private var cachedPublicKey: Bytes? = null

    /** The 65-byte uncompressed point. @throws SigningException when there is no key. */
    override val publicKey: Bytes
        get() =
            synchronized(lock) {
                cachedPublicKey ?: keystore { ks ->
                    val cert = ks.getCertificate(alias) ?: throw SigningException("no device key: pair this phone again")
                    val key = cert.publicKey as? ECPublicKey ?: throw SigningException("the device key is not an EC key")
                    Bytes.of(uncompressedPoint(key)).also { cachedPublicKey = it }
                }
            }

    /** Whether the key exists (it is gone after a Keystore reset or a restore onto another phone). */
    fun hasKey(): Boolean =
        synchronized(lock) {
            try {
                keystore { it.containsAlias(alias) }
            } catch (e: SigningException) {
                false
            }
        }

    /** ASN.1 DER ECDSA over SHA-256 of [message]. */
    override fun sign(message: ByteArray): Bytes =
        synchronized(lock) {
            keystore { ks ->
                val key = ks.getKey(alias, null) as? PrivateKey ?: throw SigningException("no device key: pair this phone again")
                val s = Signature.getInstance(SIGNATURE)
                s.initSign(key)
                s.update(message)
                Bytes.of(s.sign())
            }
        }

    /**
     * The attestation chain, leaf first, as DER. A key without attestation has only its
     * self-signed certificate, which proves nothing: then the chain is empty.
     */
    override fun attestation(): List<Bytes> =
        synchronized(lock) {
            try {
                keystore { ks ->
                    val chain = ks.getCertificateChain(alias)
                    if (chain == null || chain.size < 2) emptyList() else chain.map { Bytes.of(it.encoded) }
                }
            } catch (e: SigningException) {
                emptyList()
            }
        }

    /** (Re)creates the key with [attestationChallenge]; the device id changes. */
    override fun prepareForPairing(attestationChallenge: Bytes) {
        synchronized(lock) {
            cachedPublicKey = null
            keystore { ks -> if (ks.containsAlias(alias)) ks.deleteEntry(alias) }
            val challenge = attestationChallenge.toByteArray()
            if (strongBox) {
                try {
                    generate(challenge, strongBox = true)
                    return
                } catch (e: StrongBoxUnavailableException) {
                    // Declared but busy or unable: the TEE below.
                } catch (e: ProviderException) {
                    // Some StrongBox implementations fail attestation; the TEE key still attests.
                } catch (e: GeneralSecurityException) {
                }
            }
            try {
                generate(challenge, strongBox = false)
            } catch (e: GeneralSecurityException) {
                throw SigningException("cannot create the device key: ${e.message}", e)
            } catch (e: ProviderException) {
                throw SigningException("cannot create the device key: ${e.message}", e)
            }
        }
    }

    private fun generate(challenge: ByteArray, strongBox: Boolean) {
        val spec =
            KeyGenParameterSpec.Builder(alias, KeyProperties.PURPOSE_SIGN)
                .setAlgorithmParameterSpec(ECGenParameterSpec("secp256r1"))
                .setDigests(KeyProperties.DIGEST_SHA256)
                .setAttestationChallenge(challenge)
                .setIsStrongBoxBacked(strongBox)
                .build()
        val gen = KeyPairGenerator.getInstance(KeyProperties.KEY_ALGORITHM_EC, PROVIDER)
        gen.initialize(spec)
        gen.generateKeyPair()
    }

    /** Deletes the key (after unpairing: the server forgot it, so it can never sign in again). */
    fun forget() = keystore { it.deleteEntry(alias) }

    /** Runs [block] on the loaded Keystore; its failures become [SigningException]s. */
    private inline fun <T> keystore(block: (KeyStore) -> T): T =
        try {
            block(KeyStore.getInstance(PROVIDER).apply { load(null) })
        } catch (e: GeneralSecurityException) {
            throw SigningException("the key store failed: ${e.message}", e)
        } catch (e: IOException) {
            throw SigningException("the key store failed: ${e.message}", e)
        } catch (e: ProviderException) {
            // Keystore hardware errors arrive as this unchecked exception.
            throw SigningException("the key store failed: ${e.message}", e)
        }

    companion object {
        private const val PROVIDER = "AndroidKeyStore"
        private const val ALIAS = "traffix-device-key"
        private const val SIGNATURE = "SHA256withECDSA"

        /** StrongBox when the phone declares it (Android 9+ hardware with a secure element). */
        fun create(context: Context): KeystoreSigner =
            KeystoreSigner(context.packageManager.hasSystemFeature(PackageManager.FEATURE_STRONGBOX_KEYSTORE))

        /** 0x04 ‖ X ‖ Y, each coordinate 32 bytes unsigned big-endian (SEC 1 §2.3.3). */
        fun uncompressedPoint(key: ECPublicKey): ByteArray {
            val out = ByteArray(65)
            out[0] = 0x04
            unsigned32(key.w.affineX).copyInto(out, 1)
            unsigned32(key.w.affineY).copyInto(out, 33)
            return out
        }

        /** A P-256 coordinate as exactly 32 bytes: BigInteger's sign byte dropped, short values padded. */
        internal fun unsigned32(v: BigInteger): ByteArray {
            val b = v.toByteArray()
            return when {
                b.size == 32 -> b
                b.size == 33 && b[0] == 0.toByte() -> b.copyOfRange(1, 33)
                b.size < 32 -> ByteArray(32 - b.size) + b
                else -> throw SigningException("a P-256 coordinate wider than 32 bytes")
            }
        }
    }
}
