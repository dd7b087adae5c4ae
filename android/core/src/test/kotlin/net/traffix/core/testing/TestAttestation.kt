package net.traffix.core.testing

import java.security.KeyPair
import java.security.KeyPairGenerator
import java.security.PrivateKey
import java.security.Signature
import java.security.spec.ECGenParameterSpec
import java.util.Base64
import net.traffix.core.identity.DeviceSigner
import net.traffix.core.protocol.KeyAlg
import net.traffix.core.util.Bytes

/** DER by hand: just what a test certificate needs. */
object Der {
    private fun len(n: Int): ByteArray =
        when {
            n < 0x80 -> byteArrayOf(n.toByte())
            n < 0x100 -> byteArrayOf(0x81.toByte(), n.toByte())
            n < 0x10000 -> byteArrayOf(0x82.toByte(), (n shr 8).toByte(), n.toByte())
            else -> error("DER element of $n bytes")
        }

    fun tlv(tag: ByteArray, content: ByteArray): ByteArray = tag + len(content.size) + content

    fun tlv(tag: Int, content: ByteArray): ByteArray = tlv(byteArrayOf(tag.toByte()), content)

    fun seq(vararg parts: ByteArray): ByteArray = tlv(0x30, parts.fold(ByteArray(0)) { a, b -> a + b })

    fun hex(s: String): ByteArray = ByteArray(s.length / 2) { s.substring(2 * it, 2 * it + 2).toInt(16).toByte() }
}

/**
 * A test attestation CA (ECDSA P-256) standing in for Google's: it certifies device keys with a
 * Key Attestation extension in the real KeyDescription layout (docs/trust.md), as
 * src/trust/testkit.rs does for the Rust tests.
 */
class TestAttestationCa {
    private val root: KeyPair = newKey()
    private val rootDer = cert(1, ROOT, ROOT, spki(root), root.private, null)

    /** The root as PEM, for the server's `trust.roots`. */
    fun pem(): String =
        "-----BEGIN CERTIFICATE-----\n" + Base64.getMimeEncoder(64, "\n".toByteArray()).encodeToString(rootDer) +
            "\n-----END CERTIFICATE-----\n"

    /** `[leaf, intermediate, root]` for the P-256 point [devicePoint], for [challenge] at [securityLevel]. */
    fun chain(devicePoint: Bytes, challenge: ByteArray, securityLevel: Int): List<Bytes> {
        val inter = newKey()
        val interDer = cert(2, ROOT, "Test Attestation Key", spki(inter), root.private, null)
        val deviceSpki = Der.hex(P256_SPKI_PREFIX) + devicePoint.toByteArray()
        val leaf = cert(3, "Test Attestation Key", "Android Keystore Key", deviceSpki, inter.private, keyDescription(challenge, securityLevel))
        return listOf(leaf, interDer, rootDer).map { Bytes.of(it) }
    }

    private companion object {
        const val ROOT = "Test Attestation Root"
        const val P256_SPKI_PREFIX = "3059301306072a8648ce3d020106082a8648ce3d030107034200"
        val ECDSA_SHA256 = Der.hex("06082a8648ce3d040302")
        val CN = Der.hex("0603550403")
        val ATTEST_OID = Der.hex("060a2b06010401d679020111")

        fun newKey(): KeyPair = KeyPairGenerator.getInstance("EC").apply { initialize(ECGenParameterSpec("secp256r1")) }.generateKeyPair()

        fun spki(k: KeyPair): ByteArray = k.public.encoded

        fun name(cn: String): ByteArray = Der.seq(Der.tlv(0x31, Der.seq(CN, Der.tlv(0x0c, cn.toByteArray()))))

        fun cert(serial: Int, issuer: String, subject: String, spki: ByteArray, signer: PrivateKey, attestation: ByteArray?): ByteArray {
            val algId = Der.seq(ECDSA_SHA256)
            val validity = Der.seq(Der.tlv(0x17, "200101000000Z".toByteArray()), Der.tlv(0x17, "491231235959Z".toByteArray()))
            val ext = attestation?.let { Der.tlv(0xa3, Der.seq(Der.seq(ATTEST_OID, Der.tlv(0x04, it)))) } ?: ByteArray(0)
            val tbs = Der.seq(Der.tlv(0xa0, Der.tlv(0x02, byteArrayOf(2))), Der.tlv(0x02, byteArrayOf(serial.toByte())), algId, name(issuer), validity, name(subject), spki, ext)
            val sig = Signature.getInstance("SHA256withECDSA").apply { initSign(signer); update(tbs) }.sign()
            return Der.seq(tbs, algId, Der.tlv(0x03, byteArrayOf(0) + sig))
        }

        /** A KeyDescription: locked, verified boot, our package; [level] 0 software, 1 TEE, 2 StrongBox. */
        fun keyDescription(challenge: ByteArray, level: Int): ByteArray {
            val rot = Der.seq(
                Der.tlv(0x04, ByteArray(32) { 0xaa.toByte() }),
                Der.tlv(0x01, byteArrayOf(0xff.toByte())),
                Der.tlv(0x0a, byteArrayOf(0)),
                Der.tlv(0x04, ByteArray(32) { 0xbb.toByte() }),
            )
            val info = Der.seq(Der.tlv(0x04, "net.traffix.node".toByteArray()), Der.tlv(0x02, byteArrayOf(7)))
            val appId = Der.seq(Der.tlv(0x31, info), Der.tlv(0x31, Der.tlv(0x04, ByteArray(32) { 0x5a })))
            val app = Der.tlv(Der.hex("bf8545"), Der.tlv(0x04, appId))
            val rootOfTrust = Der.tlv(Der.hex("bf8540"), rot)
            return Der.seq(
                Der.tlv(0x02, Der.hex("012c")),
                Der.tlv(0x0a, byteArrayOf(level.toByte())),
                Der.tlv(0x02, Der.hex("012c")),
                Der.tlv(0x0a, byteArrayOf(level.toByte())),
                Der.tlv(0x04, challenge),
                Der.tlv(0x04, ByteArray(0)),
                Der.seq(app),
                Der.seq(rootOfTrust),
            )
        }
    }
}

/**
 * A device signer that behaves like the app's Keystore signer: [prepareForPairing] makes a new
 * key for the attestation challenge, and [attestation] is its chain from [ca].
 */
class AttestingSigner(private val ca: TestAttestationCa, private val securityLevel: Int) : DeviceSigner {
    @Volatile private var inner: DeviceSigner = SoftwareSigner.newP256()

    @Volatile private var chain: List<Bytes> = emptyList()

    /** The challenges keys were made for. */
    val challenges = java.util.concurrent.CopyOnWriteArrayList<Bytes>()

    override val keyAlg: KeyAlg get() = inner.keyAlg
    override val publicKey: Bytes get() = inner.publicKey

    override fun sign(message: ByteArray): Bytes = inner.sign(message)

    override fun attestation(): List<Bytes> = chain

    override fun prepareForPairing(attestationChallenge: Bytes) {
        val next = SoftwareSigner.newP256()
        chain = ca.chain(next.publicKey, attestationChallenge.toByteArray(), securityLevel)
        inner = next
        challenges.add(attestationChallenge)
    }
}
