package net.traffix.node

import android.content.Context
import android.content.SharedPreferences
import androidx.core.content.edit
import java.time.LocalDate
import java.time.format.DateTimeParseException
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import net.traffix.core.device.RunJournal
import net.traffix.core.pairing.PairLink
import net.traffix.core.policy.DataUsage
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.usage.RadioUsageMeter

/**
 * What the app keeps across restarts, in one private SharedPreferences file (excluded from
 * backups: the device key cannot leave the phone, so neither may the pairing): the pairing link
 * and whether the server accepted this device's key, the owner's [ResourceSettings] (with the
 * owner's pause), "start on boot", the accepted disclosure and the operator's terms, the radio's
 * byte counters the data caps are measured with, and the service's [RunJournal].
 *
 * One instance per process ([get]); its flows are what the service and the screens observe.
 * SharedPreferences rather than DataStore: the boot receiver and the service read it
 * synchronously at start, and writes are small and rare (usage and the journal at most every
 * 30 s, core's `Pacer`).
 */
class SettingsStore private constructor(private val prefs: SharedPreferences) {
    /** The stored pairing: [paired] once the server accepted the key (PROOF from then on). */
    data class Pairing(val link: PairLink, val paired: Boolean, val vip: String?)

    private val _pairing = MutableStateFlow(readPairing())
    val pairing: StateFlow<Pairing?> = _pairing.asStateFlow()

    private val _settings = MutableStateFlow(readSettings())
    val settings: StateFlow<ResourceSettings> = _settings.asStateFlow()

    private val _startOnBoot = MutableStateFlow(prefs.getBoolean(K_START_ON_BOOT, true))
    val startOnBoot: StateFlow<Boolean> = _startOnBoot.asStateFlow()

    /** The owner's last Start or Stop: an app update restarts the node only if it was running. */
    val ownerWantsRunning: Boolean get() = journal().wantRunning

    private val _consentVersion = MutableStateFlow(prefs.getInt(K_CONSENT, 0).takeIf { it > 0 })

    /** The version of the sharing disclosure the owner accepted, or null (core `Consent`). */
    val consentVersion: StateFlow<Int?> = _consentVersion.asStateFlow()

    /** The operator's terms from the last pairing link, shown again from Home. */
    val termsUrl: String? get() = prefs.getString(K_TERMS, null)

    fun acceptConsent(version: Int, terms: String?) {
        prefs.edit {
            putInt(K_CONSENT, version)
            if (terms != null) putString(K_TERMS, terms) else remove(K_TERMS)
        }
        _consentVersion.value = version
    }

    /** Pauses or resumes sharing: a setting the core's policy reads (pause reason by_owner). */
    fun setPaused(paused: Boolean) {
        if (_settings.value.paused == paused) return
        saveSettings(_settings.value.copy(paused = paused))
    }

    /** What the service remembers about its own life (core `RestartWatchdog`). */
    fun journal(): RunJournal =
        RunJournal(
            wantRunning = prefs.getBoolean(K_WANT_RUNNING, false),
            lastAliveMillis = prefs.getLong(K_ALIVE, NONE).takeIf { it != NONE },
            restartRefusedAtMillis = prefs.getLong(K_REFUSED, NONE).takeIf { it != NONE },
        )

    fun saveJournal(j: RunJournal) {
        prefs.edit {
            putBoolean(K_WANT_RUNNING, j.wantRunning)
            putLong(K_ALIVE, j.lastAliveMillis ?: NONE)
            putLong(K_REFUSED, j.restartRefusedAtMillis ?: NONE)
        }
    }

    /** The radio meter's state: the counts and the UID counter reading they were made from. */
    fun meterState(today: LocalDate): RadioUsageMeter.MeterState =
        RadioUsageMeter.MeterState(
            usage = usage() ?: DataUsage(today),
            lastTotal = prefs.getLong(K_METER_TOTAL, NONE).takeIf { it >= 0 },
            bootId = prefs.getLong(K_METER_BOOT, NONE).takeIf { it >= 0 },
        )

    fun saveMeterState(m: RadioUsageMeter.MeterState) {
        saveUsage(m.usage)
        prefs.edit {
            putLong(K_METER_TOTAL, m.lastTotal ?: NONE)
            putLong(K_METER_BOOT, m.bootId ?: NONE)
        }
    }

    /** A new pairing link: not paired until the server's WELCOME ([markPaired]). */
    fun savePairLink(link: PairLink) {
        prefs.edit {
            putString(K_LINK, link.toLink())
            putBoolean(K_PAIRED, false)
            remove(K_VIP)
        }
        _pairing.value = Pairing(link, paired = false, vip = null)
    }

    fun markPaired(vip: String) {
        val current = _pairing.value ?: return
        prefs.edit {
            putBoolean(K_PAIRED, true)
            putString(K_VIP, vip)
        }
        _pairing.value = current.copy(paired = true, vip = vip)
    }

    fun forgetPairing() {
        prefs.edit {
            remove(K_LINK)
            remove(K_PAIRED)
            remove(K_VIP)
        }
        _pairing.value = null
    }

    fun saveSettings(s: ResourceSettings) {
        prefs.edit {
            putBoolean(K_WIFI_ONLY, s.wifiOnly)
            putBoolean(K_CHARGING_ONLY, s.chargingOnly)
            putNullableInt(K_BATTERY_FLOOR, s.batteryFloorPct)
            putNullableLong(K_DAILY_CAP, s.dailyCapBytes)
            putNullableLong(K_MONTHLY_CAP, s.monthlyCapBytes)
            putInt(K_MONTH_START, s.monthStartDay)
            putString(K_SCHEDULE, Formats.encodeSchedule(s.schedule))
            putInt(K_MAX_STREAMS, s.maxStreams)
            putBoolean(K_PAUSED, s.paused)
        }
        _settings.value = s
    }

    fun setStartOnBoot(on: Boolean) {
        prefs.edit { putBoolean(K_START_ON_BOOT, on) }
        _startOnBoot.value = on
    }

    /** The counters as last saved, or null before the first stream. */
    fun usage(): DataUsage? {
        val day = prefs.getString(K_USAGE_DAY, null) ?: return null
        return try {
            DataUsage(LocalDate.parse(day), prefs.getLong(K_USAGE_TODAY, 0), prefs.getLong(K_USAGE_MONTH, 0))
        } catch (e: DateTimeParseException) {
            null
        } catch (e: IllegalArgumentException) {
            null
        }
    }

    fun saveUsage(u: DataUsage) {
        prefs.edit {
            putString(K_USAGE_DAY, u.day.toString())
            putLong(K_USAGE_TODAY, u.bytesToday)
            putLong(K_USAGE_MONTH, u.bytesMonth)
        }
    }

    private fun readPairing(): Pairing? {
        val text = prefs.getString(K_LINK, null) ?: return null
        val link = (PairLink.parse(text) as? PairLink.Result.Ok)?.link ?: return null
        return Pairing(link, prefs.getBoolean(K_PAIRED, false), prefs.getString(K_VIP, null))
    }

    /** Stored settings; the core's defaults for what was never set, and all of them if the file is bad. */
    private fun readSettings(): ResourceSettings {
        val d = ResourceSettings()
        return try {
            ResourceSettings(
                wifiOnly = prefs.getBoolean(K_WIFI_ONLY, d.wifiOnly),
                chargingOnly = prefs.getBoolean(K_CHARGING_ONLY, d.chargingOnly),
                batteryFloorPct = if (prefs.contains(K_BATTERY_FLOOR)) nullableInt(K_BATTERY_FLOOR) else d.batteryFloorPct,
                dailyCapBytes = nullableLong(K_DAILY_CAP),
                monthlyCapBytes = nullableLong(K_MONTHLY_CAP),
                monthStartDay = prefs.getInt(K_MONTH_START, d.monthStartDay),
                schedule = Formats.decodeSchedule(prefs.getString(K_SCHEDULE, "") ?: ""),
                maxStreams = prefs.getInt(K_MAX_STREAMS, d.maxStreams),
                paused = prefs.getBoolean(K_PAUSED, false),
            )
        } catch (e: IllegalArgumentException) {
            d
        } catch (e: ClassCastException) {
            d
        }
    }

    // A null limit is stored as the key holding NONE ("off"), so "off" and "never set" differ.
    private fun nullableInt(key: String): Int? = prefs.getInt(key, NONE.toInt()).takeIf { it != NONE.toInt() }

    private fun nullableLong(key: String): Long? = prefs.getLong(key, NONE).takeIf { it != NONE }

    private fun SharedPreferences.Editor.putNullableInt(key: String, v: Int?) {
        putInt(key, v ?: NONE.toInt())
    }

    private fun SharedPreferences.Editor.putNullableLong(key: String, v: Long?) {
        putLong(key, v ?: NONE)
    }

    companion object {
        private const val FILE = "node"
        private const val NONE = -1L
        private const val K_LINK = "pair_link"
        private const val K_PAIRED = "paired"
        private const val K_VIP = "vip"
        private const val K_START_ON_BOOT = "start_on_boot"
        private const val K_WANT_RUNNING = "owner_wants_running"
        private const val K_WIFI_ONLY = "wifi_only"
        private const val K_CHARGING_ONLY = "charging_only"
        private const val K_BATTERY_FLOOR = "battery_floor_pct"
        private const val K_DAILY_CAP = "daily_cap_bytes"
        private const val K_MONTHLY_CAP = "monthly_cap_bytes"
        private const val K_MONTH_START = "month_start_day"
        private const val K_SCHEDULE = "schedule"
        private const val K_MAX_STREAMS = "max_streams"
        private const val K_USAGE_DAY = "usage_day"
        private const val K_USAGE_TODAY = "usage_today"
        private const val K_USAGE_MONTH = "usage_month"
        private const val K_PAUSED = "paused_by_owner"
        private const val K_CONSENT = "consent_version"
        private const val K_TERMS = "operator_terms_url"
        private const val K_ALIVE = "last_alive_millis"
        private const val K_REFUSED = "restart_refused_millis"
        private const val K_METER_TOTAL = "meter_uid_total"
        private const val K_METER_BOOT = "meter_boot_id"

        @Volatile private var instance: SettingsStore? = null

        fun get(context: Context): SettingsStore =
            instance ?: synchronized(this) {
                instance ?: SettingsStore(context.applicationContext.getSharedPreferences(FILE, Context.MODE_PRIVATE))
                    .also { instance = it }
            }
    }
}
