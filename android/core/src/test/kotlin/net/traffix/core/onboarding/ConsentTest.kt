package net.traffix.core.onboarding

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

class ConsentTest {
    private val base = "traffix://pair?server=proxy.example.com:8443&pin=${"ab".repeat(32)}&code=K7QX"

    @Test
    fun termsComeFromTheLinkAndOnlyOverHttps() {
        assertEquals("https://example.com/terms?v=2", Consent.termsUrl("$base&terms=https%3A%2F%2Fexample.com%2Fterms%3Fv%3D2"))
        assertEquals("https://example.com/t", Consent.termsUrl("$base&terms=https://example.com/t"))
        assertNull(Consent.termsUrl(base))
        for (bad in listOf("http://example.com/t", "javascript:alert(1)", "https://", "https://user@example.com/", "https://exa mple.com", "%zz", "file:///etc/passwd")) {
            assertNull(bad, Consent.termsUrl("$base&terms=$bad"))
        }
        assertNull(Consent.termsUrl("$base&terms=https://example.com/" + "a".repeat(600)))
    }

    @Test
    fun aNewerDisclosureAsksAgain() {
        assertTrue(Consent.needed(null))
        assertTrue(Consent.needed(Consent.VERSION - 1))
        assertFalse(Consent.needed(Consent.VERSION))
    }
}
