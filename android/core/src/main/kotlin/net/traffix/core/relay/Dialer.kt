package net.traffix.core.relay

import java.io.IOException
import java.net.ConnectException
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.NoRouteToHostException
import java.net.Socket
import java.net.SocketTimeoutException
import javax.net.SocketFactory
import java.net.UnknownHostException
import java.util.concurrent.ExecutionException
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.TimeoutException
import net.traffix.core.egress.EgressPolicy
import net.traffix.core.egress.Host
import net.traffix.core.egress.TargetCheck
import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.protocol.OpenErrReason
import net.traffix.core.protocol.Target
import net.traffix.core.time.Clock

/** Resolves a host name to its addresses; throws [UnknownHostException] when there are none. */
fun interface Resolver {
    fun resolve(name: String): List<IpAddr>

    companion object {
        /** The platform resolver (Android's: per-network, DNS-over-TLS when the owner set it). */
        val SYSTEM = Resolver { name -> InetAddress.getAllByName(name).map { IpAddr.fromBytes(it.address) } }
    }
}

/** The outcome of [Dialer.dial]. */
sealed class DialResult {
    /** Connected to [peer], which passed the egress policy. The caller owns [socket]. */
    class Connected(val socket: Socket, val peer: SocketAddr) : DialResult()

    /** No connection: the OPEN_ERR reason and a message for the server's log. */
    data class Failed(val reason: OpenErrReason, val message: String) : DialResult()
}

/**
 * SECURITY.md §1 on the node, as the Rust agent does it: check the port and the spelling,
 * resolve once, check every address, dial the checked literal (never the name again: no second
 * resolution a rebinding DNS server could answer differently), and make sure the connected peer
 * is the checked one.
 *
 * [policy] is read on every dial, so the agent can refresh its own networks when the phone
 * changes network. Name resolution runs on [dnsPool] so it can be given up on after the
 * timeout (the platform resolver cannot be interrupted).
 */
class Dialer(
    private val policy: () -> EgressPolicy,
    private val timeoutMillis: Long = 10_000,
    private val resolver: Resolver = Resolver.SYSTEM,
    /** Source address for outgoing connections (tests bind one loopback address per node). */
    private val bind: InetAddress? = null,
    private val clock: Clock = Clock.SYSTEM,
    private val dnsPool: ExecutorService = DEFAULT_DNS_POOL,
    /**
     * Makes every unconnected socket a dial uses: on Android the chosen network's
     * `Network.getSocketFactory()`, so a handover never moves a stream onto another network.
     */
    private val socketFactory: SocketFactory = SocketFactory.getDefault(),
) {
    fun dial(target: Target): DialResult {
        val deadline = clock.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMillis)
        val egress = policy()
        val port = target.port
        val hostText =
            when (target) {
                is Target.Ip -> target.addr.ip.toString()
                is Target.Domain -> target.name
            }
        val host =
            when (val c = egress.checkTarget(hostText, port)) {
                is TargetCheck.Refused -> return DialResult.Failed(OpenErrReason.REFUSED_BY_POLICY, c.refusal.toString())
                is TargetCheck.Allowed -> c.host
            }
        val addrs: List<IpAddr> =
            when (host) {
                is Host.Ip -> listOf(host.ip)
                is Host.Name ->
                    when (val r = resolve(host.name, deadline)) {
                        is Resolved.Ok -> r.addrs
                        is Resolved.Err -> return r.failure
                    }
            }
        if (addrs.isEmpty()) return DialResult.Failed(OpenErrReason.DNS_FAILED, "name resolved to no address")
        for (a in addrs) {
            egress.checkAddr(SocketAddr(a, port))?.let { return DialResult.Failed(OpenErrReason.REFUSED_BY_POLICY, it.toString()) }
        }
        var last = DialResult.Failed(OpenErrReason.HOST_UNREACHABLE, "no address could be reached")
        for (a in addrs) {
            val left = TimeUnit.NANOSECONDS.toMillis(deadline - clock.nanoTime())
            val where = SocketAddr(a, port)
            if (left <= 0) return DialResult.Failed(OpenErrReason.TIMEOUT, "connecting to $where timed out")
            val socket = socketFactory.createSocket()
            try {
                if (bind != null && (bind.address.size == 4) == (a is IpAddr.V4)) socket.bind(InetSocketAddress(bind, 0))
                socket.connect(InetSocketAddress(InetAddress.getByAddress(a.toByteArray()), port), left.toInt().coerceAtLeast(1))
                val peerIp = socket.inetAddress?.let { IpAddr.fromBytes(it.address) }
                val peer = peerIp?.let { SocketAddr(it, socket.port) }
                if (peer == null || !samePeer(peer, where)) {
                    closeQuietly(socket)
                    return DialResult.Failed(OpenErrReason.REFUSED_BY_POLICY, "connected peer $peer is not the checked address $where")
                }
                socket.tcpNoDelay = true
                return DialResult.Connected(socket, where)
            } catch (e: IOException) {
                closeQuietly(socket)
                last = DialResult.Failed(reasonOf(e), "$where: ${e.message ?: e.javaClass.simpleName}")
                if (last.reason == OpenErrReason.TIMEOUT) return last
            }
        }
        return last
    }

    /**
     * A probe-flagged OPEN: only to the server's own address ([EgressPolicy.probeEndpoint]),
     * from the same source address as client streams, so the server sees the node's egress.
     */
    fun dialProbe(target: Target): DialResult {
        val addr = (target as? Target.Ip)?.addr?.let { policy().probeEndpoint(it) }
            ?: return DialResult.Failed(OpenErrReason.REFUSED_BY_POLICY, "probe opens go only to the server's own address")
        val socket = socketFactory.createSocket()
        return try {
            if (bind != null && (bind.address.size == 4) == (addr.ip is IpAddr.V4)) socket.bind(InetSocketAddress(bind, 0))
            socket.connect(InetSocketAddress(InetAddress.getByAddress(addr.ip.toByteArray()), addr.port), timeoutMillis.toInt().coerceAtLeast(1))
            socket.tcpNoDelay = true
            DialResult.Connected(socket, addr)
        } catch (e: IOException) {
            closeQuietly(socket)
            DialResult.Failed(reasonOf(e), "$addr: ${e.message ?: e.javaClass.simpleName}")
        }
    }

    private sealed class Resolved {
        class Ok(val addrs: List<IpAddr>) : Resolved()

        class Err(val failure: DialResult.Failed) : Resolved()
    }

    private fun resolve(name: String, deadline: Long): Resolved {
        val future = dnsPool.submit<List<IpAddr>> { resolver.resolve(name) }
        return try {
            Resolved.Ok(future.get(maxOf(deadline - clock.nanoTime(), 1), TimeUnit.NANOSECONDS))
        } catch (e: TimeoutException) {
            future.cancel(true)
            Resolved.Err(DialResult.Failed(OpenErrReason.DNS_FAILED, "resolving $name timed out"))
        } catch (e: ExecutionException) {
            val why = (e.cause as? UnknownHostException)?.let { "no such host" } ?: (e.cause?.message ?: "lookup failed")
            Resolved.Err(DialResult.Failed(OpenErrReason.DNS_FAILED, "cannot resolve $name: $why"))
        } catch (e: InterruptedException) {
            Thread.currentThread().interrupt()
            Resolved.Err(DialResult.Failed(OpenErrReason.INTERNAL, "interrupted while resolving $name"))
        }
    }

    companion object {
        /** Resolver threads: blocking lookups, bounded so a DNS outage cannot spawn without limit. */
        val DEFAULT_DNS_POOL: ExecutorService =
            Executors.newFixedThreadPool(8) { r -> Thread(r, "traffix-dns").apply { isDaemon = true } }

        /** The OPEN_ERR reason for a failed connect, as the Rust agent maps `io::ErrorKind`. */
        fun reasonOf(e: IOException): OpenErrReason =
            when {
                e is SocketTimeoutException -> OpenErrReason.TIMEOUT
                e is NoRouteToHostException -> OpenErrReason.HOST_UNREACHABLE
                e.message?.contains("Network is unreachable", ignoreCase = true) == true -> OpenErrReason.NETWORK_UNREACHABLE
                e is ConnectException -> OpenErrReason.CONNECTION_REFUSED
                else -> OpenErrReason.HOST_UNREACHABLE
            }

        /** Java reports an IPv4-mapped IPv6 peer as IPv4: compare them as the same address. */
        private fun samePeer(a: SocketAddr, b: SocketAddr): Boolean {
            if (a.port != b.port) return false
            fun v4(ip: IpAddr): IpAddr = (ip as? IpAddr.V6)?.toIpv4Mapped() ?: ip
            return v4(a.ip) == v4(b.ip)
        }

        internal fun closeQuietly(s: Socket) {
            try {
                s.close()
            } catch (_: IOException) {
            }
        }
    }
}
