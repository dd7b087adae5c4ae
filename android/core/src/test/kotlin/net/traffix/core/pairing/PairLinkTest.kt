package net.traffix.core.pairing

import net.traffix.core.util.Bytes
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** The same cases as the Rust agent's `pairing_link_round_trip_and_errors`, and a few more. */
class PairLinkTest {
    private val pin = Bytes.of(ByteArray(32) { 0xab.toByte() })

    private fun ok(text: String): PairLink = (PairLink.parse(text) as PairLink.Result.Ok).link

    private fun invalid(text: String): String = (PairLink.parse(text) as PairLink.Result.Invalid).why

    @Test
    fun roundTrips() {
        val l = PairLink("example.com:8443", pin, "ABCD")
        assertEquals(l, ok(l.toLink()))
        val insecure = l.copy(insecure = true)
        assertEquals(insecure, ok(insecure.toLink()))
        assertEquals("example.com", l.host)
        assertEquals(8443, l.port)
        val v6 = ok("traffix://pair?server=[2001:db8::1]:443&pin=${pin.hex().uppercase()}&code=X")
        assertEquals("2001:db8::1", v6.host)
        assertEquals(pin, v6.pin)
        // Surrounding whitespace from a paste, and escapes, are fine.
        assertEquals("A B", ok("  traffix://pair?server=h:1&pin=${pin.hex()}&code=A%20B\n").code)
    }

    @Test
    fun badLinksSayWhatIsWrong() {
        val p = pin.hex()
        assertTrue(invalid("https://pair?server=a:1").contains("traffix://pair"))
        assertTrue(invalid("traffix://pair?server=a&pin=$p&code=x").contains("HOST:PORT"))
        assertTrue(invalid("traffix://pair?server=a:99999&pin=$p&code=x").contains("HOST:PORT"))
        assertTrue(invalid("traffix://pair?server=a:1&pin=zz&code=x").contains("64 hex"))
        assertTrue(invalid("traffix://pair?server=a:1&pin=${p}00&code=x").contains("64 hex"))
        assertTrue(invalid("traffix://pair?server=a:1&code=x").contains("pin="))
        assertTrue(invalid("traffix://pair?server=a:1&pin=$p").contains("code="))
        assertTrue(invalid("traffix://pair?pin=$p&code=x").contains("server="))
        assertTrue(invalid("traffix://pair?server=a:1&pin=$p&code=%zz").contains("escape"))
        assertTrue(invalid("").contains("traffix://pair"))
    }

    private fun problem(text: String): Pair<PairLink.Problem, String> =
        (PairLink.parse(text) as PairLink.Result.Invalid).let { it.problem to it.detail }

    @Test
    fun badLinksAreTypedProblemsWithTheirData() {
        val p = pin.hex()
        assertEquals(PairLink.Problem.NOT_A_LINK to "", problem("https://pair?server=a:1"))
        assertEquals(PairLink.Problem.BAD_SERVER to "a", problem("traffix://pair?server=a&pin=$p&code=x"))
        assertEquals(PairLink.Problem.BAD_SERVER to "a:0", problem("traffix://pair?server=a:0&pin=$p&code=x"))
        assertEquals(PairLink.Problem.BAD_PIN to "", problem("traffix://pair?server=a:1&pin=zz&code=x"))
        assertEquals(PairLink.Problem.NO_PIN to "", problem("traffix://pair?server=a:1&code=x"))
        assertEquals(PairLink.Problem.NO_CODE to "", problem("traffix://pair?server=a:1&pin=$p&code="))
        assertEquals(PairLink.Problem.NO_SERVER to "", problem("traffix://pair?pin=$p&code=x"))
        assertEquals(PairLink.Problem.BAD_ESCAPE to "code", problem("traffix://pair?server=a:1&pin=$p&code=%zz"))
    }

    @Test
    fun toStringHidesTheCode() {
        assertTrue(!PairLink("h:1", pin, "SECRET").toString().contains("SECRET"))
    }
}
