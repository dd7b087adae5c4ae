package net.traffix.core.support

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

class LogRingTest {
    @Test
    fun keepsTheLastLinesWithinBothBounds() {
        val r = LogRing(maxLines = 3, maxBytes = 10_000)
        for (i in 1..5) r.add(1_767_225_600_000 + i, "INFO", "event n=$i")
        assertEquals(listOf("event n=3", "event n=4", "event n=5"), r.snapshot().map { it.substringAfter("INFO ") })
        assertTrue(r.snapshot()[0].startsWith("2026-01-01T00:00:00.003Z INFO"))
        val small = LogRing(maxLines = 100, maxBytes = 200)
        repeat(50) { small.add(0, "WARN", "x".repeat(40)) }
        assertTrue(small.snapshot().sumOf { it.length + 1 } <= 200)
        assertTrue(small.snapshot().isNotEmpty())
        val long = LogRing()
        long.add(0, "INFO", "y".repeat(5_000))
        assertTrue(long.snapshot().single().length < LogRing.MAX_LINE + 40)
    }

    @Test
    fun noSecretSurvivesIntoTheExport() {
        val secrets =
            listOf(
                "pairing with traffix://pair?server=proxy.example.com:8443&pin=${"ab".repeat(32)}&code=K7QX-29PL",
                "hello code=K7QX-29PL pin=0123",
                "auth token: eyJhbGciOiJIUzI1NiJ9.payload",
                "Authorization: Bearer sk_live_123456",
                "device id 3f9a${"0".repeat(60)}",
                "attestation MIIBszCCAVmgAwIBAgIUQk1hY2hpbmVLZXlBdHRlc3RhdGlvbjAK",
                "signed nonce=\"deadbeef\" signature=3045022100",
            )
        val r = LogRing()
        secrets.forEach { r.add(0, "INFO", it) }
        val out = r.export(listOf("app 0.1.0 on Android 15", "server proxy.example.com:8443 pin=${"cd".repeat(32)}"))
        for (bad in listOf("K7QX-29PL", "ab".repeat(32), "cd".repeat(32), "eyJhbGci", "sk_live", "0".repeat(32), "MIIBszCC", "deadbeef", "3045022100")) {
            assertFalse("$bad leaked into:\n$out", out.contains(bad))
        }
        // What happened is still there.
        assertTrue(out.contains("pairing with traffix://pair?[redacted]"))
        assertTrue(out.contains("# server proxy.example.com:8443 pin=[redacted]"))
        assertTrue(out.contains("hello code=[redacted] pin=[redacted]"))
    }

    @Test
    fun ordinaryAgentLinesPassUnchanged() {
        val line = "tunnel down reason=\"server silent for 61 s\" lived_ms=120000 retry_in_ms=2000"
        assertEquals(line, Redactor.redact(line))
        assertEquals("policy action=pause reasons=\"daily data cap reached\"", Redactor.redact("policy action=pause reasons=\"daily data cap reached\""))
    }
}
