package net.traffix.core.testing

import java.math.BigInteger
import java.security.AlgorithmParameters
import java.security.KeyFactory
import java.security.KeyPairGenerator
import java.security.PrivateKey
import java.security.PublicKey
import java.security.Signature
import java.security.interfaces.ECPublicKey
import java.security.spec.ECGenParameterSpec
import java.security.spec.ECParameterSpec
import java.security.spec.ECPoint
import java.security.spec.ECPublicKeySpec
import java.security.spec.EdECPrivateKeySpec
import java.security.spec.NamedParameterSpec
import java.security.spec.X509EncodedKeySpec
import net.traffix.core.identity.DeviceSigner
import net.traffix.core.protocol.KeyAlg
import net.traffix.core.util.Bytes
import net.traffix.core.util.Hex

/**
 * Software device keys for tests, on the JDK's providers (Ed25519 needs Java 15+). The app
 * implements [DeviceSigner] with the Android Keystore instead.
 */
class SoftwareSigner private constructor(
    override val keyAlg: KeyAlg,
    override val publicKey: Bytes,
    private val privateKey: PrivateKey,
) : DeviceSigner {
    override fun sign(message: ByteArray): Bytes {
        val s = Signature.getInstance(if (keyAlg == KeyAlg.ED25519) "Ed25519" else "SHA256withECDSA")
        s.initSign(privateKey)
        s.update(message)
        return Bytes.of(s.sign())
    }

    companion object {
        /** The Ed25519 key of a 32-byte RFC 8032 seed; deterministic signatures. */
        fun ed25519(seed: Bytes, publicKey: Bytes): SoftwareSigner {
            val kf = KeyFactory.getInstance("Ed25519")
            val priv = kf.generatePrivate(EdECPrivateKeySpec(NamedParameterSpec.ED25519, seed.toByteArray()))
            return SoftwareSigner(KeyAlg.ED25519, publicKey, priv)
        }

        /** A fresh ECDSA P-256 key, as the Android Keystore would make. */
        fun newP256(): SoftwareSigner {
            val g = KeyPairGenerator.getInstance("EC")
            g.initialize(ECGenParameterSpec("secp256r1"))
            val kp = g.generateKeyPair()
            val w = (kp.public as ECPublicKey).w
            val point = ByteArray(65)
            point[0] = 4
            unsigned32(w.affineX).copyInto(point, 1)
            unsigned32(w.affineY).copyInto(point, 33)
            return SoftwareSigner(KeyAlg.ECDSA_P256, Bytes.of(point), kp.private)
        }

        private fun unsigned32(v: BigInteger): ByteArray {
            val b = v.toByteArray()
            return when {
                b.size == 32 -> b
                b.size > 32 -> b.copyOfRange(b.size - 32, b.size)
                else -> ByteArray(32 - b.size) + b
            }
        }
    }
}

/** Verifies device signatures as the server does (only tests need it on the node side). */
object SignatureCheck {
    private val ED25519_SPKI_PREFIX = Hex.decode("302a300506032b6570032100")

    fun verify(alg: KeyAlg, publicKey: Bytes, message: ByteArray, signature: Bytes): Boolean =
        try {
            val (algorithm, key) =
                when (alg) {
                    KeyAlg.ED25519 -> "Ed25519" to ed25519Key(publicKey)
                    KeyAlg.ECDSA_P256 -> "SHA256withECDSA" to p256Key(publicKey)
                }
            val s = Signature.getInstance(algorithm)
            s.initVerify(key)
            s.update(message)
            s.verify(signature.toByteArray())
        } catch (e: java.security.GeneralSecurityException) {
            false
        }

    private fun ed25519Key(raw: Bytes): PublicKey =
        KeyFactory.getInstance("Ed25519").generatePublic(X509EncodedKeySpec(ED25519_SPKI_PREFIX + raw.toByteArray()))

    private fun p256Key(point: Bytes): PublicKey {
        val p = point.toByteArray()
        require(p.size == 65 && p[0] == 4.toByte()) { "not an uncompressed P-256 point" }
        val params = AlgorithmParameters.getInstance("EC")
        params.init(ECGenParameterSpec("secp256r1"))
        val spec = params.getParameterSpec(ECParameterSpec::class.java)
        val w = ECPoint(BigInteger(1, p.copyOfRange(1, 33)), BigInteger(1, p.copyOfRange(33, 65)))
        return KeyFactory.getInstance("EC").generatePublic(ECPublicKeySpec(w, spec))
    }
}
