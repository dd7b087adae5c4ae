package net.traffix.core.policy

import net.traffix.core.policy.SettingsProblem.Kind
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

/** The settings form judged into settings or typed problems (the app words them). */
class SettingsInputTest {
    private val form =
        SettingsForm(
            wifiOnly = true, chargingOnly = false, batteryFloorPct = 30,
            dailyCap = "", dailyUnit = SizeUnit.GB, monthlyCap = "", monthlyUnit = SizeUnit.GB,
            monthStartDay = "1", maxStreams = "64", schedule = Schedule.ALWAYS,
        )

    private fun problems(f: SettingsForm): List<SettingsProblem> = (SettingsInput.check(f) as SettingsCheck.Invalid).problems

    @Test
    fun aGoodFormIsTheSettings() {
        val ok = SettingsInput.check(form.copy(dailyCap = "1,5", monthlyCap = " 200 ", monthlyUnit = SizeUnit.MB, monthStartDay = " 15", paused = true))
        val s = (ok as SettingsCheck.Ok).settings
        assertEquals(1_500_000_000L, s.dailyCapBytes)
        assertEquals(200_000_000L, s.monthlyCapBytes)
        assertEquals(15, s.monthStartDay)
        assertEquals(64, s.maxStreams)
        assertTrue(s.paused)
        assertEquals(null, (SettingsInput.check(form) as SettingsCheck.Ok).settings.dailyCapBytes)
    }

    @Test
    fun everyProblemIsTypedWithItsData() {
        assertEquals(
            listOf(
                SettingsProblem(SettingsField.DAILY_CAP, Kind.NOT_A_NUMBER, "lots"),
                SettingsProblem(SettingsField.MONTHLY_CAP, Kind.TOO_LARGE, "1e30"),
                SettingsProblem(SettingsField.MONTH_START_DAY, Kind.NOT_WHOLE, "1.5"),
                SettingsProblem(SettingsField.MAX_STREAMS, Kind.TOO_LARGE, "99999999999"),
            ),
            problems(form.copy(dailyCap = " lots ", monthlyCap = "1e30", monthStartDay = "1.5", maxStreams = "99999999999")),
        )
        assertEquals(
            listOf(
                SettingsProblem(SettingsField.BATTERY_FLOOR, Kind.OUT_OF_RANGE, min = 0, max = 100),
                SettingsProblem(SettingsField.DAILY_CAP, Kind.NEGATIVE),
                SettingsProblem(SettingsField.MONTH_START_DAY, Kind.OUT_OF_RANGE, min = 1, max = 31),
                SettingsProblem(SettingsField.MAX_STREAMS, Kind.NEGATIVE),
            ),
            problems(form.copy(batteryFloorPct = 101, dailyCap = "-1", dailyUnit = SizeUnit.MB, monthStartDay = "32", maxStreams = "-3")),
        )
        assertEquals(
            listOf(SettingsProblem(SettingsField.MONTH_START_DAY, Kind.NOT_WHOLE, "")),
            problems(form.copy(monthStartDay = " ")),
        )
    }

    @Test
    fun capsParse() {
        assertEquals(SettingsInput.CapParse.Ok(null), SettingsInput.parseCap("  ", SizeUnit.GB, SettingsField.DAILY_CAP))
        assertEquals(SettingsInput.CapParse.Ok(1_500_000_000L), SettingsInput.parseCap("1.5", SizeUnit.GB, SettingsField.DAILY_CAP))
        assertEquals(SettingsInput.CapParse.Ok(1L), SettingsInput.parseCap("0.000001", SizeUnit.MB, SettingsField.DAILY_CAP))
    }

    @Test
    fun theSettingsThemselvesStillRefuseWhatTheFormWouldNotAccept() {
        val e = assertThrows(IllegalArgumentException::class.java) { ResourceSettings(monthStartDay = 0) }
        assertTrue(e.message!!, e.message!!.contains("month_start_day"))
        assertEquals(emptyList<SettingsProblem>(), ResourceSettings.problems(0, 0, 0, 31, 0))
    }
}
