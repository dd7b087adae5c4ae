package net.traffix.core.transport

import java.security.SecureRandom
import java.util.concurrent.TimeUnit
import javax.net.SocketFactory
import javax.net.ssl.SSLContext
import net.traffix.core.util.Bytes
import okhttp3.ConnectionSpec
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.Response
import okhttp3.TlsVersion
import okhttp3.WebSocket
import okhttp3.WebSocketListener
import okio.ByteString

/*
 * The only file that knows OkHttp. It is written against the OkHttp 3.13 API (Debian's
 * libokhttp-java, which CI compiles against) and pinned to 3.14.9 in Gradle: OkHttp 4 is not
 * source-compatible for Kotlin callers (properties instead of methods), and keeping every call
 * here keeps a future upgrade to one file.
 */

/**
 * Tunnels over OkHttp WebSockets: TLS 1.3 only, trust by [PinnedTrustManager], and no WebSocket
 * pings: the agent's heartbeats are the tunnel's only keepalive (docs/protocol.md "One
 * keepalive"), so an idle phone's radio wakes once per heartbeat, not also for pings. OkHttp
 * still answers the server's pings, should an older server send them.
 */
class OkHttpTransport(
    private val connectTimeoutMillis: Long = 10_000,
    /** Test servers run `--insecure-http`: allow `ws://` only when asked. */
    private val allowPlainWs: Boolean = false,
    /**
     * Makes the tunnel's TCP sockets (TLS goes on top): on Android the chosen network's, so the
     * tunnel never moves onto another network.
     */
    private val socketFactory: SocketFactory = SocketFactory.getDefault(),
) : TunnelTransport {
    /** Shared pool and dispatcher; per tunnel only the TLS settings differ. */
    private val base: OkHttpClient =
        OkHttpClient.Builder()
            .connectTimeout(connectTimeoutMillis, TimeUnit.MILLISECONDS)
            // No read timeout: a quiet tunnel is normal; the agent's liveness rule (2.5 heartbeat
            // intervals + 10 s without a message) decides when it is dead.
            .readTimeout(0, TimeUnit.MILLISECONDS)
            .writeTimeout(connectTimeoutMillis, TimeUnit.MILLISECONDS)
            // No .pingInterval(): 0, OkHttp's default, sends none.
            .retryOnConnectionFailure(false)
            .followRedirects(false)
            .socketFactory(socketFactory)
            .build()

    override fun open(url: String, pin: Bytes, listener: TunnelListener): TunnelSocket {
        require(url.startsWith("wss://") || (allowPlainWs && url.startsWith("ws://"))) { "tunnel URL must be wss://: $url" }
        val trust = PinnedTrustManager(pin)
        val tls = SSLContext.getInstance("TLS")
        tls.init(null, arrayOf(trust), SecureRandom())
        val tls13 =
            ConnectionSpec.Builder(ConnectionSpec.RESTRICTED_TLS)
                .tlsVersions(TlsVersion.TLS_1_3)
                .build()
        val client =
            base.newBuilder()
                .sslSocketFactory(tls.socketFactory, trust)
                .hostnameVerifier(PinnedHostnameVerifier(pin))
                .connectionSpecs(listOf(tls13, ConnectionSpec.CLEARTEXT))
                .build()
        val socket = OkSocket()
        // OkHttp's scheme for WebSocket URLs is http(s); it upgrades.
        val httpUrl = "http" + url.removePrefix("ws")
        socket.ws = client.newWebSocket(Request.Builder().url(httpUrl).build(), Events(socket, listener))
        return socket
    }

    private class OkSocket : TunnelSocket {
        @Volatile lateinit var ws: WebSocket

        override fun send(message: ByteArray): Boolean = ws.send(ByteString.of(message, 0, message.size))

        override fun close(code: Int, reason: String) {
            ws.close(code, reason.take(120))
        }

        override fun cancel() = ws.cancel()
    }

    /** OkHttp's callbacks → [TunnelListener], with exactly one onClosed. */
    private class Events(private val socket: OkSocket, private val listener: TunnelListener) : WebSocketListener() {
        @Volatile private var ended = false

        private fun end(why: String) {
            if (ended) return
            ended = true
            listener.onClosed(socket, why)
        }

        override fun onOpen(webSocket: WebSocket, response: Response) {
            socket.ws = webSocket
            listener.onOpen(socket)
        }

        override fun onMessage(webSocket: WebSocket, bytes: ByteString) {
            if (!ended) listener.onMessage(socket, bytes.toByteArray())
        }

        override fun onMessage(webSocket: WebSocket, text: String) {
            if (!ended) listener.onText(socket)
        }

        override fun onClosing(webSocket: WebSocket, code: Int, reason: String) {
            webSocket.close(CloseCodes.NORMAL, null)
            end("server closed the tunnel ($code${if (reason.isEmpty()) "" else ": $reason"})")
        }

        override fun onClosed(webSocket: WebSocket, code: Int, reason: String) {
            end("tunnel closed ($code)")
        }

        override fun onFailure(webSocket: WebSocket, t: Throwable, response: Response?) {
            val status = response?.let { " (HTTP ${it.code()})" } ?: ""
            end("${t.javaClass.simpleName}: ${t.message ?: "connection failed"}$status")
        }
    }
}
