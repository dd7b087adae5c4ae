package net.traffix.node

import android.app.PendingIntent
import android.content.Intent
import android.os.Build
import android.service.quicksettings.Tile
import android.service.quicksettings.TileService
import net.traffix.node.ui.MainActivity

/**
 * The Quick Settings tile: active while the node is running and not paused by the owner. A tap
 * pauses a sharing node, resumes a paused one, and starts a stopped one (a tile tap lets the
 * app start its foreground service; where Android still refuses, the app opens instead).
 */
class NodeTileService : TileService() {
    override fun onStartListening() {
        super.onStartListening()
        refresh()
    }

    override fun onClick() {
        super.onClick()
        val store = SettingsStore.get(this)
        if (store.pairing.value == null) {
            openApp()
            return
        }
        val running = NodeStatus.running.value
        val paused = store.settings.value.paused
        try {
            when {
                running && !paused -> NodeService.pause(this)
                running -> NodeService.resume(this)
                else -> {
                    store.setPaused(false)
                    NodeService.start(this)
                }
            }
        } catch (e: IllegalStateException) {
            // Not allowed to start a foreground service from here: the owner starts it in the app.
            openApp()
        }
        refresh()
    }

    private fun refresh() {
        val tile = qsTile ?: return
        val store = SettingsStore.get(this)
        val sharing = NodeStatus.running.value && !store.settings.value.paused
        tile.state = if (store.pairing.value == null) Tile.STATE_UNAVAILABLE else if (sharing) Tile.STATE_ACTIVE else Tile.STATE_INACTIVE
        tile.label = getString(R.string.tile_label)
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            tile.subtitle = getString(if (sharing) R.string.tile_sharing else if (NodeStatus.running.value) R.string.tile_paused else R.string.tile_off)
        }
        tile.updateTile()
    }

    private fun openApp() {
        val intent = Intent(this, MainActivity::class.java).addFlags(Intent.FLAG_ACTIVITY_NEW_TASK)
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.UPSIDE_DOWN_CAKE) {
            startActivityAndCollapse(PendingIntent.getActivity(this, 0, intent, PendingIntent.FLAG_IMMUTABLE))
        } else {
            @Suppress("DEPRECATION") // the Intent overload is the only one before Android 14
            startActivityAndCollapse(intent)
        }
    }
}
