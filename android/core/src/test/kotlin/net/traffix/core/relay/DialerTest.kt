package net.traffix.core.relay

import java.net.InetAddress
import java.net.ServerSocket
import java.net.UnknownHostException
import java.util.concurrent.CountDownLatch
import net.traffix.core.egress.EgressPolicy
import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.protocol.OpenErrReason
import net.traffix.core.protocol.Target
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** SECURITY.md §1 on real loopback sockets: check, resolve once, check every address, dial the literal. */
class DialerTest {
    private val loopback = IpAddr.v4(127, 0, 0, 1)

    private fun failed(r: DialResult): DialResult.Failed = r as? DialResult.Failed ?: throw AssertionError("connected: $r")

    @Test
    fun refusesSpecialRangesAndBlockedPortsWithoutDialing() {
        val d = Dialer({ EgressPolicy() }, resolver = { throw AssertionError("no lookup for a literal") })
        for (t in listOf(
            Target.Ip(SocketAddr(loopback, 80)),
            Target.Ip(SocketAddr(IpAddr.v4(169, 254, 169, 254), 80)),
            Target.Ip(SocketAddr(IpAddr.v4(93, 184, 216, 34), 25)),
            Target.Domain("localhost", 80),
            Target.Domain("0x7f.1", 80),
        )) {
            assertEquals(t.toString(), OpenErrReason.REFUSED_BY_POLICY, failed(d.dial(t)).reason)
        }
    }

    @Test
    fun aNameResolvingToAPrivateAddressIsRefused() {
        // DNS rebinding: a public-looking name that answers with a private address.
        var lookups = 0
        val d = Dialer({ EgressPolicy() }, resolver = { lookups++; listOf(IpAddr.v4(93, 184, 216, 34), IpAddr.v4(10, 1, 2, 3)) })
        val f = failed(d.dial(Target.Domain("rebind.example", 443)))
        assertEquals(OpenErrReason.REFUSED_BY_POLICY, f.reason)
        assertTrue(f.message, f.message.contains("10.1.2.3"))
        assertEquals("resolved once", 1, lookups)
    }

    @Test
    fun dnsFailuresAndTimeoutsAreDnsFailed() {
        val none = Dialer({ EgressPolicy() }, resolver = { throw UnknownHostException(it) })
        assertEquals(OpenErrReason.DNS_FAILED, failed(none.dial(Target.Domain("nx.example", 80))).reason)
        val empty = Dialer({ EgressPolicy() }, resolver = { emptyList() })
        assertEquals(OpenErrReason.DNS_FAILED, failed(empty.dial(Target.Domain("empty.example", 80))).reason)
        val hang = CountDownLatch(1)
        val slow = Dialer({ EgressPolicy() }, timeoutMillis = 50, resolver = { hang.await(); emptyList() })
        val f = failed(slow.dial(Target.Domain("slow.example", 80)))
        hang.countDown()
        assertEquals(OpenErrReason.DNS_FAILED, f.reason)
        assertTrue(f.message.contains("timed out"))
    }

    @Test
    fun connectsToTheCheckedLiteralAndReportsRefusals() {
        val open = EgressPolicy(allowPrivateTargets = true)
        ServerSocket(0, 5, InetAddress.getLoopbackAddress()).use { srv ->
            val d = Dialer({ open }, resolver = { listOf(loopback) })
            val r = d.dial(Target.Domain("origin.test", srv.localPort)) as DialResult.Connected
            assertEquals(SocketAddr(loopback, srv.localPort), r.peer)
            r.socket.close()
        }
        // A port nobody listens on: find one by closing a listener.
        val closed = ServerSocket(0, 5, InetAddress.getLoopbackAddress()).use { it.localPort }
        val d = Dialer({ open })
        assertEquals(OpenErrReason.CONNECTION_REFUSED, failed(d.dial(Target.Ip(SocketAddr(loopback, closed)))).reason)
    }

    @Test
    fun aProbeReachesOnlyTheServersOwnAddressWhichAnOrdinaryOpenMayNot() {
        ServerSocket(0, 5, InetAddress.getLoopbackAddress()).use { probe ->
            // The server's tunnel endpoint on loopback; its probe endpoint on another port.
            val p = EgressPolicy(serverEndpoints = listOf(SocketAddr(loopback, 1)))
            val d = Dialer({ p })
            val at = Target.Ip(SocketAddr(loopback, probe.localPort))
            assertEquals(OpenErrReason.REFUSED_BY_POLICY, failed(d.dial(at)).reason)
            val r = d.dialProbe(at) as DialResult.Connected
            assertEquals(SocketAddr(loopback, probe.localPort), r.peer)
            r.socket.close()
            // Never the tunnel endpoint, another host or a name.
            assertEquals(OpenErrReason.REFUSED_BY_POLICY, failed(d.dialProbe(Target.Ip(SocketAddr(loopback, 1)))).reason)
            val other = Target.Ip(SocketAddr(IpAddr.v4(127, 0, 0, 2), probe.localPort))
            assertEquals(OpenErrReason.REFUSED_BY_POLICY, failed(d.dialProbe(other)).reason)
            assertEquals(OpenErrReason.REFUSED_BY_POLICY, failed(d.dialProbe(Target.Domain("localhost", probe.localPort))).reason)
        }
    }

    @Test
    fun ownNetworksAndTheServerItselfAreRefusedEvenWhenPublic() {
        val server = SocketAddr(IpAddr.v4(203, 0, 113, 10), 8443)
        val p = EgressPolicy(serverEndpoints = listOf(server))
        val d = Dialer({ p })
        assertEquals(OpenErrReason.REFUSED_BY_POLICY, failed(d.dial(Target.Ip(server))).reason)
    }

    @Test
    fun everyDialAndProbeTakesItsSocketFromTheInjectedFactory() {
        // On Android the factory is the chosen network's: no dial may fall back to the default one.
        val made = java.util.concurrent.atomic.AtomicInteger()
        val factory =
            object : javax.net.SocketFactory() {
                override fun createSocket(): java.net.Socket = java.net.Socket().also { made.incrementAndGet() }

                override fun createSocket(host: String?, port: Int) = throw AssertionError("connected sockets are never asked for")

                override fun createSocket(host: String?, port: Int, local: InetAddress?, localPort: Int) = throw AssertionError()

                override fun createSocket(host: InetAddress?, port: Int) = throw AssertionError()

                override fun createSocket(host: InetAddress?, port: Int, local: InetAddress?, localPort: Int) = throw AssertionError()
            }
        ServerSocket(0, 5, InetAddress.getLoopbackAddress()).use { srv ->
            val open = EgressPolicy(allowPrivateTargets = true, serverEndpoints = listOf(SocketAddr(loopback, 1)))
            val d = Dialer({ open }, resolver = { listOf(loopback) }, socketFactory = factory)
            (d.dial(Target.Domain("origin.test", srv.localPort)) as DialResult.Connected).socket.close()
            val probe = SocketAddr(loopback, srv.localPort)
            val p = EgressPolicy(serverEndpoints = listOf(SocketAddr(loopback, 1)))
            (Dialer({ p }, socketFactory = factory).dialProbe(Target.Ip(probe)) as DialResult.Connected).socket.close()
        }
        assertEquals(2, made.get())
    }
}
