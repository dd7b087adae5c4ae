package net.traffix.core.transport

import java.security.MessageDigest
import java.security.cert.CertificateException
import java.security.cert.X509Certificate
import javax.net.ssl.HostnameVerifier
import javax.net.ssl.SSLSession
import javax.net.ssl.X509TrustManager
import net.traffix.core.protocol.Handshake
import net.traffix.core.util.Bytes

/*
 * Trust by pin (docs/protocol.md "Transport"): the appliance's certificate is self-signed, so no
 * CA validates it; the pairing link carries the SHA-256 of its SubjectPublicKeyInfo and that is
 * the only thing trusted. The pin is also bound into every signature the device makes, so a
 * relay through any other TLS endpoint fails even if this check were bypassed.
 */

/** SHA-256 of a certificate's DER SubjectPublicKeyInfo: what a pairing link's `pin=` holds. */
fun spkiPin(cert: X509Certificate): Bytes =
    Bytes.of(MessageDigest.getInstance("SHA-256").digest(cert.publicKey.encoded))

/**
 * An [X509TrustManager] that accepts exactly the server whose leaf certificate's public key
 * hashes to [pin], and nothing else (no CA, no expiry: the pin is the anchor, and the appliance
 * rotates its key by re-pairing).
 */
class PinnedTrustManager(private val pin: Bytes) : X509TrustManager {
    init {
        require(pin.size == Handshake.PIN_LEN) { "pin has ${pin.size} bytes, not ${Handshake.PIN_LEN}" }
    }

    override fun checkServerTrusted(chain: Array<out X509Certificate>?, authType: String?) {
        val leaf = chain?.firstOrNull() ?: throw CertificateException("server sent no certificate")
        val got = spkiPin(leaf)
        if (got != pin) {
            throw CertificateException(
                "server key does not match the pairing link's pin: got ${got.hex()}, want ${pin.hex()} " +
                    "(a different server, or one that changed its key: pair again)",
            )
        }
    }

    override fun checkClientTrusted(chain: Array<out X509Certificate>?, authType: String?) {
        throw CertificateException("this trust manager checks servers only")
    }

    override fun getAcceptedIssuers(): Array<X509Certificate> = arrayOf()
}

/**
 * The name check for a pinned server: the certificate's names do not matter (the server may be
 * reached by IP or a name the certificate lacks); the key does, checked again on the session.
 */
class PinnedHostnameVerifier(private val pin: Bytes) : HostnameVerifier {
    override fun verify(hostname: String?, session: SSLSession?): Boolean {
        val leaf = session?.peerCertificates?.firstOrNull() as? X509Certificate ?: return false
        return MessageDigest.isEqual(spkiPin(leaf).toByteArray(), pin.toByteArray())
    }
}
