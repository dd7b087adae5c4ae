package net.traffix.core.policy

import java.time.LocalDateTime
import net.traffix.core.protocol.NetworkType
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Test

/** What the app enforces itself until the agent sees the phone's whole picture. */
class FieldGateTest {
    private val now = LocalDateTime.of(2026, 12, 3, 10, 0)
    private val day = now.toLocalDate()
    private val settings = ResourceSettings(wifiOnly = true, batteryFloorPct = 20, dailyCapBytes = 1_000)

    private fun phone(network: NetworkType = NetworkType.WIFI, radioToday: Long = 0, battery: Int = 80) =
        DeviceConditions(network, battery, false, DataUsage(day, radioToday, radioToday), now, 1)

    @Test
    fun reasonsTheAgentSeesItselfNeedNoHold() {
        assertNull(FieldGate.hold(settings, phone(), DataUsage(day)))
        // Cellular with Wi-Fi only: the agent's own NOT_ON_WIFI.
        assertNull(FieldGate.hold(settings, phone(network = NetworkType.CELLULAR), DataUsage(day)))
        // Battery under the floor: the agent's own.
        assertNull(FieldGate.hold(settings, phone(battery = 10), DataUsage(day)))
    }

    @Test
    fun aHotspotDataSaverBatterySaverAndTheRadiosCountHoldTheAgent() {
        val hotspot = FieldGate.hold(settings, phone().copy(metered = true), DataUsage(day))
        assertEquals(setOf(PauseReason.NOT_ON_WIFI), hotspot?.reasons)
        val open = settings.copy(wifiOnly = false)
        assertEquals(setOf(PauseReason.DATA_SAVER), FieldGate.hold(open, phone(network = NetworkType.CELLULAR).copy(dataSaver = true), DataUsage(day))?.reasons)
        assertEquals(setOf(PauseReason.BATTERY_SAVER), FieldGate.hold(settings, phone().copy(batterySaver = true), DataUsage(day))?.reasons)
        // The radio moved 1,000 bytes, the agent relayed 480: the cap is reached by the radio's count.
        val capped = FieldGate.hold(settings, phone(radioToday = 1_000), DataUsage(day, 480, 480))
        assertEquals(Action.PAUSE, capped?.action)
        assertEquals(setOf(PauseReason.DAILY_CAP), capped?.reasons)
        // Once the agent's own count reaches the cap too, it pauses by itself.
        assertNull(FieldGate.hold(settings, phone(radioToday = 1_000), DataUsage(day, 1_000, 1_000)))
    }
}
