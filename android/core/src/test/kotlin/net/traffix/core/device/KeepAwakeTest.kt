package net.traffix.core.device

import net.traffix.core.protocol.NetworkType
import net.traffix.core.testing.FakeClock
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Test

class KeepAwakeTest {
    private val clock = FakeClock()

    @Test
    fun locksAreHeldOnlyWhileStreamsAreLiveAndALittleAfter() {
        val k = KeepAwake(clock, lingerMillis = 30_000)
        assertEquals("an idle tunnel holds nothing", KeepAwake.Locks.NONE, k.update(0, NetworkType.WIFI))
        assertNull(k.recheckAfterMillis())
        assertEquals(KeepAwake.Locks(wakeLock = true, wifiLock = true), k.update(3, NetworkType.WIFI))
        assertEquals("no Wi-Fi lock off Wi-Fi", KeepAwake.Locks(wakeLock = true, wifiLock = false), k.update(1, NetworkType.ETHERNET))
        clock.advanceMillis(10_000)
        assertEquals("lingering after the last stream", KeepAwake.Locks(true, false), k.update(0, NetworkType.ETHERNET))
        assertEquals(20_000L, k.recheckAfterMillis())
        clock.advanceMillis(20_000)
        assertEquals(KeepAwake.Locks.NONE, k.update(0, NetworkType.WIFI))
        assertNull(k.recheckAfterMillis())
    }
}
