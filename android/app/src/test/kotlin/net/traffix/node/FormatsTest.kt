package net.traffix.node

import java.time.DayOfWeek
import java.time.LocalTime
import java.util.Locale
import net.traffix.core.policy.Schedule
import net.traffix.core.policy.SizeUnit
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

class FormatsTest {
    @Test
    fun moneyIsExactFromMicrosInTheOwnersFormat() {
        val us = Locale.US
        assertEquals("$0.00", Formats.money(0, "USD", us))
        assertEquals("€1.00", Formats.money(1_000_000, "EUR", us))
        assertEquals("0.10", Formats.money(100_000, null, us))
        assertEquals("$0.000001", Formats.money(1, "USD", us))
        assertEquals("$12.345678", Formats.money(12_345_678, "USD", us))
        assertEquals("$0.125", Formats.money(125_000, "USD", us))
        // Far past what a double holds exactly; a code that is no ISO currency follows the number.
        assertEquals("9,223,372,036,854.775807 XTOKEN", Formats.money(Long.MAX_VALUE, "XTOKEN", us))
        // German: decimal comma, grouping dot, the currency after the number.
        val de = Formats.money(1_234_500_000, "EUR", Locale.GERMANY)
        assertTrue(de, de.startsWith("1.234,50") && de.endsWith("€"))
        assertEquals("0,125", Formats.money(125_000, "", Locale.GERMANY))
    }

    @Test
    fun bytesInDecimalUnitsAndTheOwnersNumbers() {
        val us = Locale.US
        assertEquals("0" to ByteUnit.B, Formats.size(0, us))
        assertEquals("999" to ByteUnit.B, Formats.size(999, us))
        assertEquals("1.00" to ByteUnit.KB, Formats.size(1000, us))
        assertEquals("1.50" to ByteUnit.KB, Formats.size(1500, us))
        assertEquals("12.3" to ByteUnit.MB, Formats.size(12_345_678, us))
        assertEquals("999" to ByteUnit.MB, Formats.size(999_000_000, us))
        assertEquals("128" to ByteUnit.GB, Formats.size(128_000_000_000, us))
        assertEquals("9.22" to ByteUnit.EB, Formats.size(Long.MAX_VALUE, us))
        assertEquals("12,3" to ByteUnit.MB, Formats.size(12_345_678, Locale.GERMANY))
        assertEquals("1,50" to ByteUnit.KB, Formats.size(1500, Locale.FRANCE))
    }

    @Test
    fun capsPrint() {
        assertEquals("" to SizeUnit.GB, Formats.capText(null))
        assertEquals("1.5" to SizeUnit.GB, Formats.capText(1_500_000_000L))
        assertEquals("200" to SizeUnit.MB, Formats.capText(200_000_000L))
        assertEquals("0" to SizeUnit.MB, Formats.capText(0))
    }

    @Test
    fun times() {
        assertEquals(LocalTime.of(7, 5), Formats.parseTime("7:05"))
        assertEquals(LocalTime.of(22, 0), Formats.parseTime(" 22:00 "))
        assertNull(Formats.parseTime("24:00"))
        assertNull(Formats.parseTime("7:5"))
        assertNull(Formats.parseTime("seven"))
        assertEquals("07:05", Formats.time(LocalTime.of(7, 5)))
    }

    @Test
    fun scheduleRoundTrips() {
        val s =
            Schedule(
                listOf(
                    Schedule.Window(setOf(DayOfWeek.FRIDAY, DayOfWeek.MONDAY), LocalTime.of(22, 0), LocalTime.of(7, 0)),
                    Schedule.Window(Schedule.EVERY_DAY, LocalTime.MIDNIGHT, LocalTime.MIDNIGHT),
                ),
            )
        val text = Formats.encodeSchedule(s)
        assertEquals(
            "MONDAY,FRIDAY@22:00-07:00;MONDAY,TUESDAY,WEDNESDAY,THURSDAY,FRIDAY,SATURDAY,SUNDAY@00:00-00:00",
            text,
        )
        assertEquals(s, Formats.decodeSchedule(text))
        assertEquals(Schedule.ALWAYS, Formats.decodeSchedule(""))
        assertThrows(IllegalArgumentException::class.java) { Formats.decodeSchedule("MONDAY") }
        assertThrows(IllegalArgumentException::class.java) { Formats.decodeSchedule("MOONDAY@01:00-02:00") }
        assertThrows(IllegalArgumentException::class.java) { Formats.decodeSchedule("MONDAY@01:00-25:00") }
    }

    @Test
    fun dayNames() {
        assertEquals("every day", Formats.days(Schedule.EVERY_DAY, Locale.ENGLISH, "every day"))
        assertEquals("Mon, Sat", Formats.days(setOf(DayOfWeek.SATURDAY, DayOfWeek.MONDAY), Locale.ENGLISH, "every day"))
    }
}
