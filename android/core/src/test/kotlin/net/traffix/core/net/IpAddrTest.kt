package net.traffix.core.net

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Test

/** Parsing and printing follow Rust's std::net (the server shares vectors with this core). */
class IpAddrTest {
    @Test
    fun ipv4Canonical() {
        assertEquals(IpAddr.v4(192, 0, 2, 10), IpAddr.parse("192.0.2.10"))
        assertEquals("255.255.255.255", IpAddr.parse("255.255.255.255").toString())
        for (bad in listOf("", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1.2.3.4 ", "+1.2.3.4", "1..2.3", "0x1.2.3.4")) {
            assertNull(bad, IpAddr.parseV4(bad))
        }
    }

    @Test
    fun ipv6Grammar() {
        val ok = mapOf(
            "::" to "::",
            "::1" to "::1",
            "1::" to "1::",
            "1:2:3:4:5:6:7::" to "1:2:3:4:5:6:7:0",
            "::2:3:4:5:6:7:8" to "0:2:3:4:5:6:7:8",
            "0000:0000:0000:0000:0000:0000:0000:0001" to "::1",
            "2001:DB8::1" to "2001:db8::1",
            "::ffff:127.0.0.1" to "::ffff:127.0.0.1",
            "::ffff:7f00:1" to "::ffff:127.0.0.1",
            "::127.0.0.1" to "::7f00:1",
            "64:ff9b::1.1.1.1" to "64:ff9b::101:101",
            "1:2:3:4:5:6:1.2.3.4" to "1:2:3:4:5:6:102:304",
            "1:0:0:2:0:0:0:3" to "1:0:0:2::3",
            "1:0:0:2:0:0:3:4" to "1::2:0:0:3:4",
            "1:0:2:3:4:5:6:7" to "1:0:2:3:4:5:6:7",
            "2a00:1450:4001:0829:0000:0000:0000:200e" to "2a00:1450:4001:829::200e",
        )
        for ((text, printed) in ok) assertEquals(text, printed, IpAddr.parseV6(text)?.toString())
        val bad = listOf(
            "", ":", ":::", ":::1", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8",
            "00001::1", "::ffff:0127.0.0.1", "::ffff:127.1", "1.2.3.4::", "::1.2.3.4:1", "g::", "1:2", "[::1]", "fe80::1%lo",
        )
        for (b in bad) assertNull(b, IpAddr.parseV6(b))
    }

    @Test
    fun bytesRoundTrip() {
        for (text in listOf("0.0.0.0", "93.184.215.14", "::", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")) {
            val ip = IpAddr.parse(text)!!
            assertEquals(text, ip, IpAddr.fromBytes(ip.toByteArray()))
        }
        assertEquals(IpAddr.parse("::ffff:1.2.3.4"), IpAddr.v4(1, 2, 3, 4).toIpv6Mapped())
    }

    @Test
    fun socketAddresses() {
        assertEquals(SocketAddr(IpAddr.v4(127, 0, 0, 1), 9443), SocketAddr.parse("127.0.0.1:9443"))
        assertEquals("[2001:67c:2e8::160]:443", SocketAddr.parse("[2001:67c:2e8::160]:443").toString())
        for (bad in listOf("127.0.0.1", "::1:80", "127.0.0.1:65536", "[::1]", "example.com:80")) {
            assertNull(bad, SocketAddr.parse(bad))
        }
    }
}
