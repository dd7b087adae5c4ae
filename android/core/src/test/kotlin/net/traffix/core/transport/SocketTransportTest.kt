package net.traffix.core.transport

import java.io.DataInputStream
import java.io.InputStream
import java.io.OutputStream
import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import net.traffix.core.util.Bytes
import net.traffix.core.util.Hex
import org.junit.After
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** The Sec-WebSocket-Key of an upgrade request's header lines. */
private fun keyOf(request: List<String>) = request.first { it.startsWith("Sec-WebSocket-Key:") }.substringAfter(':').trim()

/**
 * [SocketTransport] against a local server written here byte by byte (plain `ws://`, as test
 * servers run `--insecure-http`): the upgrade it sends, frames both ways, the server's pings and
 * close, and every broken or hostile answer ending in exactly one onClosed with its reason. TLS
 * and the pin are covered end to end against the real server (ServerE2ETest).
 */
class SocketTransportTest {
    private val server = ServerSocket(0, 8, InetAddress.getLoopbackAddress())
    private val url = "ws://127.0.0.1:${server.localPort}/v1/tunnel"
    private val pin = Bytes.of(ByteArray(32))
    private val transport = SocketTransport(connectTimeoutMillis = 5_000, allowPlainWs = true)

    @After
    fun closeServer() {
        server.close()
    }

    /** Everything a listener hears, in order. */
    private class Events : TunnelListener {
        val log = CopyOnWriteArrayList<String>()
        val messages = LinkedBlockingQueue<ByteArray>()
        val closed = CountDownLatch(1)
        val opened = CountDownLatch(1)

        override fun onOpen(socket: TunnelSocket) {
            log.add("open")
            opened.countDown()
        }

        override fun onMessage(socket: TunnelSocket, message: ByteArray) {
            log.add("message")
            messages.add(message)
        }

        override fun onText(socket: TunnelSocket) {
            log.add("text")
        }

        override fun onClosed(socket: TunnelSocket, why: String) {
            log.add("closed: $why")
            closed.countDown()
        }

        fun awaitClosed(): String {
            assertTrue("onClosed within 10 s", closed.await(10, TimeUnit.SECONDS))
            Thread.sleep(50) // a second onClosed would show here
            val ends = log.filter { it.startsWith("closed") }
            assertEquals("exactly one onClosed: $log", 1, ends.size)
            return ends[0]
        }
    }

    /** The server's side of one connection: reads the upgrade request, returns its headers. */
    private class Peer(val socket: Socket) {
        val input = DataInputStream(socket.getInputStream())
        val out: OutputStream = socket.getOutputStream()

        fun readRequest(): List<String> {
            val lines = ArrayList<String>()
            val line = StringBuilder()
            while (true) {
                val b = input.read()
                check(b >= 0) { "client closed during the request" }
                if (b == '\n'.code) {
                    val l = line.toString().removeSuffix("\r")
                    line.setLength(0)
                    if (l.isEmpty()) return lines
                    lines.add(l)
                } else {
                    line.append(b.toChar())
                }
            }
        }

        fun accept(request: List<String>) {
            write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${WsFraming.acceptFor(keyOf(request))}\r\n\r\n")
        }

        fun write(s: String) = write(s.toByteArray(Charsets.US_ASCII))

        fun write(b: ByteArray) {
            out.write(b)
            out.flush()
        }

        /** Reads one client frame: checks it is masked and final, returns opcode and payload. */
        fun readFrame(): Pair<Int, ByteArray> {
            val b0 = input.readUnsignedByte()
            val b1 = input.readUnsignedByte()
            assertTrue("final", b0 and 0x80 != 0)
            assertTrue("a client frame is masked", b1 and 0x80 != 0)
            val len =
                when (val l = b1 and 0x7f) {
                    126 -> input.readUnsignedShort().toLong()
                    127 -> input.readLong()
                    else -> l.toLong()
                }
            val key = ByteArray(4).also { input.readFully(it) }
            val p = ByteArray(len.toInt()).also { input.readFully(it) }
            for (i in p.indices) p[i] = (p[i].toInt() xor key[i % 4].toInt()).toByte()
            return (b0 and 0x0f) to p
        }
    }

    private fun serveOne(body: (Peer) -> Unit): Thread =
        Thread {
            server.accept().use { s -> body(Peer(s)) }
        }.apply {
            isDaemon = true
            start()
        }

    private fun serverFrame(op: Int, payload: ByteArray): ByteArray {
        val head =
            when {
                payload.size <= 125 -> byteArrayOf((0x80 or op).toByte(), payload.size.toByte())
                payload.size <= 0xffff -> byteArrayOf((0x80 or op).toByte(), 126, (payload.size ushr 8).toByte(), payload.size.toByte())
                else -> byteArrayOf((0x80 or op).toByte(), 127, 0, 0, 0, 0) + java.nio.ByteBuffer.allocate(4).putInt(payload.size).array()
            }
        return head + payload
    }

    @Test
    fun framesGoBothWaysPingsAreAnsweredAndTheServersCloseEndsTheTunnel() {
        val got = LinkedBlockingQueue<Pair<Int, ByteArray>>()
        val request = LinkedBlockingQueue<List<String>>()
        val big = ByteArray(200_000) { (it * 31).toByte() }
        val peer =
            serveOne { p ->
                val req = p.readRequest()
                request.add(req)
                p.accept(req)
                // Two messages from the node (sent before and after onOpen returns).
                got.add(p.readFrame())
                got.add(p.readFrame())
                p.write(serverFrame(WsOp.BINARY, byteArrayOf(1, 2, 3)) + serverFrame(WsOp.BINARY, big))
                p.write(serverFrame(WsOp.PING, "hi".toByteArray()))
                got.add(p.readFrame()) // the pong
                p.write(serverFrame(WsOp.CLOSE, byteArrayOf(0x03, 0xe8.toByte()) + "bye".toByteArray()))
                got.add(p.readFrame()) // the close answer
            }
        val events = Events()
        val socket = transport.open(url, pin, events)
        assertTrue(events.opened.await(10, TimeUnit.SECONDS))
        assertTrue(socket.send(byteArrayOf(9, 8, 7)))
        val large = ByteArray(150_000) { (it % 251).toByte() }
        assertTrue(socket.send(large))

        val req = request.take()
        assertEquals("GET /v1/tunnel HTTP/1.1", req[0])
        assertTrue(req.toString(), req.contains("Host: 127.0.0.1:${server.localPort}"))
        assertTrue(req.contains("Upgrade: websocket") && req.contains("Connection: Upgrade") && req.contains("Sec-WebSocket-Version: 13"))
        assertEquals(16, java.util.Base64.getDecoder().decode(keyOf(req)).size)

        val first = got.poll(10, TimeUnit.SECONDS)!!
        assertEquals(WsOp.BINARY, first.first)
        assertArrayEquals(byteArrayOf(9, 8, 7), first.second)
        assertArrayEquals(large, got.poll(10, TimeUnit.SECONDS)!!.second)
        assertArrayEquals(byteArrayOf(1, 2, 3), events.messages.poll(10, TimeUnit.SECONDS))
        assertArrayEquals(big, events.messages.poll(10, TimeUnit.SECONDS))
        val pong = got.poll(10, TimeUnit.SECONDS)!!
        assertEquals(WsOp.PONG, pong.first)
        assertEquals("hi", String(pong.second))
        assertEquals("closed: server closed the tunnel (1000: bye)", events.awaitClosed())
        val close = got.poll(10, TimeUnit.SECONDS)!!
        assertEquals(WsOp.CLOSE, close.first)
        assertEquals("03e8", Hex.encode(close.second))
        assertFalse("nothing is sent after the end", socket.send(byteArrayOf(1)))
        peer.join(10_000)
        assertEquals(listOf("open", "message", "message"), events.log.take(3))
    }

    @Test
    fun aCloseFromTheNodeIsSentAfterWhatWasQueuedAndNothingAfterIt() {
        val got = LinkedBlockingQueue<Pair<Int, ByteArray>>()
        serveOne { p ->
            p.accept(p.readRequest())
            got.add(p.readFrame())
            got.add(p.readFrame())
            p.write(serverFrame(WsOp.CLOSE, byteArrayOf(0x03, 0xe8.toByte())))
        }
        val events = Events()
        val socket = transport.open(url, pin, events)
        assertTrue(events.opened.await(10, TimeUnit.SECONDS))
        assertTrue(socket.send(byteArrayOf(5)))
        socket.close(CloseCodes.NORMAL, "going")
        assertFalse("no send once closing", socket.send(byteArrayOf(6)))
        assertArrayEquals(byteArrayOf(5), got.poll(10, TimeUnit.SECONDS)!!.second)
        val close = got.poll(10, TimeUnit.SECONDS)!!
        assertEquals(WsOp.CLOSE, close.first)
        assertEquals("03e8" + Hex.encode("going".toByteArray()), Hex.encode(close.second))
        assertTrue(events.awaitClosed().contains("server closed the tunnel (1000)"))
    }

    /** Each broken answer to the upgrade: no onOpen, one onClosed naming what was wrong. */
    @Test
    fun aBrokenUpgradeAnswerEndsTheTunnelWithItsReason() {
        val answers =
            listOf<Pair<(Peer, List<String>) -> Unit, String>>(
                { p: Peer, _: List<String> -> p.write("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n") } to "HTTP 503",
                { p: Peer, _: List<String> -> p.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n") } to "Sec-WebSocket-Accept",
                { p: Peer, r: List<String> -> p.write("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${WsFraming.acceptFor(keyOf(r))}\r\n\r\n") } to "Upgrade: websocket",
                { p: Peer, r: List<String> ->
                    p.write("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${WsFraming.acceptFor(keyOf(r))}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
                } to "did not offer",
                { p: Peer, _: List<String> -> p.write("SSH-2.0-OpenSSH_9.2\r\n\r\n") } to "not an HTTP answer",
                { p: Peer, _: List<String> -> p.write("HTTP/1.1 101 OK\r\nX: " + "a".repeat(20_000) + "\r\n\r\n") } to "over 16384 bytes",
                { p: Peer, _: List<String> -> p.write("HTTP/1.1 101 OK\r\nUpgr") } to "connection closed during the WebSocket upgrade",
            )
        for ((answer, reason) in answers) {
            val peer = serveOne { p -> answer(p, p.readRequest()) }
            val events = Events()
            transport.open(url, pin, events)
            val why = events.awaitClosed()
            assertTrue("$reason in: $why", why.contains(reason))
            assertFalse(events.log.contains("open"))
            peer.join(10_000)
        }
    }

    @Test
    fun aHostileFrameOrTheServerHangingUpEndsTheTunnelOnce() {
        val cases =
            listOf(
                Hex.decode("818548656c6c6f0000") to "masked frame",
                Hex.decode("827f7fffffffffffffff") to "over 1048576 bytes",
                Hex.decode("8905") to "connection closed inside a frame",
                ByteArray(0) to "connection closed by the server",
            )
        for ((bytes, reason) in cases) {
            val peer =
                serveOne { p ->
                    p.accept(p.readRequest())
                    p.write(bytes)
                }
            val events = Events()
            transport.open(url, pin, events)
            val why = events.awaitClosed()
            assertTrue("$reason in: $why", why.contains(reason))
            assertEquals("open", events.log.first())
            peer.join(10_000)
        }
    }

    @Test
    fun cancelEndsATunnelStillConnectingAndOneThatIsOpen() {
        // A server that accepts TCP, reads the upgrade request and never answers it.
        val asked = CountDownLatch(1)
        val silent = CountDownLatch(1)
        serveOne { p ->
            p.readRequest()
            asked.countDown()
            silent.await(20, TimeUnit.SECONDS)
        }
        val events = Events()
        val socket = transport.open(url, pin, events)
        assertTrue(asked.await(10, TimeUnit.SECONDS))
        socket.cancel()
        assertEquals("closed: cancelled", events.awaitClosed())
        assertFalse(socket.send(byteArrayOf(1)))
        silent.countDown()

        serveOne { p ->
            p.accept(p.readRequest())
            readAll(p.input)
        }
        val open = Events()
        val s2 = transport.open(url, pin, open)
        assertTrue(open.opened.await(10, TimeUnit.SECONDS))
        s2.cancel()
        assertEquals("closed: cancelled", open.awaitClosed())
    }

    /**
     * A server that stops reading: the writer blocks on a full socket. cancel() still ends the
     * tunnel at once, and a close() whose frame can never be written ends it after the linger,
     * not never; sends past the queue's bound are refused.
     */
    @Test
    fun aServerThatStopsReadingCannotHoldTheTunnel() {
        val small = SocketTransport(connectTimeoutMillis = 5_000, allowPlainWs = true, maxQueuedBytes = 4L shl 20)
        for (how in listOf("cancel", "close")) {
            val stop = CountDownLatch(1)
            serveOne { p ->
                p.accept(p.readRequest())
                stop.await(30, TimeUnit.SECONDS) // never reads
            }
            val events = Events()
            val socket = small.open(url, pin, events)
            assertTrue(events.opened.await(10, TimeUnit.SECONDS))
            val chunk = ByteArray(64 * 1024)
            var refused = false
            for (i in 0 until 200) {
                if (!socket.send(chunk)) {
                    refused = true
                    break
                }
            }
            assertTrue("the queue's bound refuses sends to a server that does not read", refused)
            val started = System.nanoTime()
            if (how == "cancel") socket.cancel() else socket.close(CloseCodes.NORMAL, "bye")
            events.awaitClosed()
            val secs = (System.nanoTime() - started) / 1e9
            assertTrue("$how ended the tunnel after $secs s", secs < 9)
            stop.countDown()
        }
    }

    @Test
    fun onlyWssUnlessPlainIsAllowed() {
        val strict = SocketTransport()
        val e = runCatching { strict.open("ws://127.0.0.1:1/v1/tunnel", pin, Events()) }.exceptionOrNull()
        assertTrue(e is IllegalArgumentException && e.message!!.contains("wss://"))
        assertEquals("[::1]:8443", TunnelUrl.parse("wss://[::1]:8443/v1/tunnel", false).upgradeRequest("k").lines()[1].substringAfter("Host: "))
        assertEquals("::1", TunnelUrl.parse("wss://[::1]:8443/v1/tunnel", false).host)
        assertEquals("example.net", TunnelUrl.parse("wss://example.net/v1/tunnel", false).upgradeRequest("k").lines()[1].substringAfter("Host: "))
        assertEquals(443, TunnelUrl.parse("wss://example.net/v1/tunnel", false).port)
        // Host names java.net.URI refuses are fine; what would break the request line is not.
        assertEquals("my_box.lan", TunnelUrl.parse("wss://my_box.lan:8443/v1/tunnel", false).host)
        for (bad in listOf("wss://a.net\r\nX: y/v1/tunnel", "wss://a net/v1", "wss://a.net:99999/v1", "wss://a.net:x/v1", "wss://[::1/v1", "wss:///v1", "wss://[]:1/v1")) {
            val err = runCatching { TunnelUrl.parse(bad, false) }.exceptionOrNull()
            assertTrue("$bad: $err", err is IllegalArgumentException)
        }
    }

    private fun readAll(input: InputStream) {
        val buf = ByteArray(4096)
        while (input.read(buf) >= 0) {
            // drain until the client hangs up
        }
    }
}
