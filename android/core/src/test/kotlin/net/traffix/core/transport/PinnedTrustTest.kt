package net.traffix.core.transport

import java.io.File
import java.nio.file.Files
import java.security.KeyStore
import java.security.MessageDigest
import java.security.cert.CertificateException
import java.security.cert.X509Certificate
import java.util.concurrent.TimeUnit
import net.traffix.core.util.Bytes
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.BeforeClass
import org.junit.Test

/**
 * Trust by pin with real self-signed certificates (made by the JDK's keytool, as the appliance
 * makes its own): the right key passes whatever the certificate's names and dates, any other key
 * fails with a message an owner can act on. The real server's certificate is checked end to end
 * in ServerE2ETest (including a wrong pin).
 */
class PinnedTrustTest {
    companion object {
        private lateinit var dir: File
        private lateinit var server: X509Certificate
        private lateinit var other: X509Certificate

        /** A fresh self-signed P-256 certificate from keytool. */
        private fun selfSigned(alias: String, cn: String): X509Certificate {
            val store = File(dir, "$alias.p12")
            val keytool = File(System.getProperty("java.home"), "bin/keytool").path
            val p =
                ProcessBuilder(
                    keytool, "-genkeypair", "-alias", alias, "-keyalg", "EC", "-groupname", "secp256r1",
                    "-dname", "CN=$cn", "-validity", "1", "-storetype", "PKCS12", "-keystore", store.path,
                    "-storepass", "changeit", "-keypass", "changeit",
                ).redirectErrorStream(true).start()
            val out = String(p.inputStream.readBytes())
            check(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0) { "keytool failed: $out" }
            val ks = KeyStore.getInstance("PKCS12")
            store.inputStream().use { ks.load(it, "changeit".toCharArray()) }
            return ks.getCertificate(alias) as X509Certificate
        }

        @BeforeClass
        @JvmStatic
        fun makeCertificates() {
            dir = Files.createTempDirectory("traffix-pin").toFile()
            server = selfSigned("server", "traffix appliance")
            other = selfSigned("other", "traffix appliance")
        }

        @AfterClass
        @JvmStatic
        fun cleanUp() {
            dir.deleteRecursively()
        }
    }

    private fun pinOf(c: X509Certificate) = Bytes.of(MessageDigest.getInstance("SHA-256").digest(c.publicKey.encoded))

    @Test
    fun thePinIsTheSha256OfTheSubjectPublicKeyInfo() {
        assertEquals(pinOf(server), spkiPin(server))
        assertEquals(32, spkiPin(server).size)
        assertTrue(spkiPin(server) != spkiPin(other))
    }

    @Test
    fun onlyThePinnedKeyIsTrusted() {
        val tm = PinnedTrustManager(spkiPin(server))
        tm.checkServerTrusted(arrayOf(server), "ECDHE_ECDSA")
        // The same names, another key: refused, and the message says what to do.
        val e = assertThrows(CertificateException::class.java) { tm.checkServerTrusted(arrayOf(other), "ECDHE_ECDSA") }
        assertTrue(e.message!!, e.message!!.contains("pin") && e.message!!.contains("pair again"))
        // Only the leaf counts: the pinned certificate further down a chain does not help.
        assertThrows(CertificateException::class.java) { tm.checkServerTrusted(arrayOf(other, server), "ECDHE_ECDSA") }
        assertThrows(CertificateException::class.java) { tm.checkServerTrusted(arrayOf(), "ECDHE_ECDSA") }
        assertThrows(CertificateException::class.java) { tm.checkServerTrusted(null, "ECDHE_ECDSA") }
        assertThrows(CertificateException::class.java) { tm.checkClientTrusted(arrayOf(server), "ECDHE_ECDSA") }
        assertEquals(0, tm.acceptedIssuers.size)
    }

    @Test
    fun aPinMustBe32Bytes() {
        assertThrows(IllegalArgumentException::class.java) { PinnedTrustManager(Bytes.of(ByteArray(31))) }
    }
}
